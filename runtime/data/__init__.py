"""tsym.runtime.data: labelled structures in, validated tensors out; converters and labelling.

* :mod:`~tsym.runtime.data.labels`: ``LabelSpec``, where a label lives and how it is written;
* :mod:`~tsym.runtime.data.dataset`: ``read_dataset``, ``collate_records``;
* :mod:`~tsym.runtime.data.records`: the checks of one extxyz record;
* :mod:`~tsym.runtime.data.split`, :mod:`~tsym.runtime.data.voigt`: splits, Voigt notation;
* :mod:`~tsym.runtime.data.crystal`: crystal symmetry of labels (spglib);
* :mod:`~tsym.runtime.data.convert`: public data sets -> extended XYZ;
* :mod:`~tsym.runtime.data.label`: reference labels from PySCF;
* ``assets/``: the demo data set.
"""
from __future__ import annotations

from .dataset import DataReport, Dataset, Record, collate_records, read_dataset
from .labels import LabelSpec
from .split import load_split, save_split, split
from .voigt import (VOIGT_PAIRS, tensor3_to_voigt, tensor4_to_voigt, voigt_to_tensor3,
                    voigt_to_tensor4)

__all__ = [
    "LabelSpec", "Record", "Dataset", "DataReport", "read_dataset",
    "collate_records", "split", "save_split", "load_split",
    "VOIGT_PAIRS", "voigt_to_tensor4", "tensor4_to_voigt", "voigt_to_tensor3", "tensor3_to_voigt",
]
