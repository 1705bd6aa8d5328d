"""ReLIFT's README command, here: ``cd dataset && python prepare_train.py`` (same CLI as prepare_relift).

Writes ``train_data/openr1.parquet`` (relative to the current directory) from the hub set
Elliott/Openr1-Math-46k-8192, as ReLIFT's own script does; see dataset/prepare_relift.py for options.
"""

import os
import sys

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:  # run as a script from dataset/: make the repo importable
        sys.path.insert(0, root)
    from dataset.prepare_relift import main

    sys.exit(main(prog="python prepare_train.py"))
