"""The benchmark cases of REFERENCE.md / issue 2 (nanoBragg flags)."""
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


def _pix0_full():
    text = (GOLDEN / "public" / "pix0_custom_roi" / "args.txt").read_text()
    text = text.replace("{in}", str(GOLDEN / "inputs"))
    return text.split("-roi")[0].split()


CASES = {
    "cube_1024": ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 "
                  "-detpixels 1024 -pixel 0.1 -oversample 1").split(),
    "triclinic_512": ("-cell 70 80 90 75 85 95 -misset 10 20 30 -default_F 100 -N 5 -lambda 1.5 "
                      "-distance 100 -detpixels 512 -pixel 0.1 -oversample 1").split(),
    "triclinic_mosaic_phi_512": ("-cell 70 80 90 75 85 95 -misset 10 20 30 -default_F 100 -N 5 "
                                 "-lambda 1.5 -distance 100 -detpixels 512 -pixel 0.1 -mosaic 0.5 "
                                 "-mosaic_dom 10 -phi 0 -osc 1 -phisteps 5 -oversample 1").split(),
    "oversample4_512": ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 "
                        "-detpixels 512 -pixel 0.1 -oversample 4").split(),
    "pix0_full_2463x2527": _pix0_full(),
}
