"""Raw dataset readers, cleaning, leave-one-out split and the synthetic generator.

Typical use (what `recranker raw` and `recranker prepare` do)::

    folder = locate_raw("ml-100k", path=None, data_root=os.environ.get("RECRANKER_DATA"),
                        cache_dir="data/downloads/ml-100k")
    snapshot_raw("ml-100k", folder, "data/raw/ml-100k")  # the copy DVC tracks
    prepared = prepare(read_raw("ml-100k", "data/raw/ml-100k"), kcore_k=0, min_interactions=3)
    write_prepared(prepared, "data/processed/ml-100k")

Light on purpose: only numpy/pandas are imported.
"""

from .filtering import drop_duplicates, is_kcore, kcore
from .process import FILES, Prepared, load_prepared, prepare, write_prepared
from .raw import RawData
from .readers import FORMATS, locate_raw, raw_files, read_raw, snapshot_raw
from .sources import SOURCES, Source, download, locate, md5sum
from .split import SPLITS, encode_ids, leave_one_out, test_user_subset
from .synthetic import synthesize, write_llama_factory, write_recbole_atomic, write_synthetic

__all__ = [
    "FILES",
    "FORMATS",
    "SOURCES",
    "SPLITS",
    "Prepared",
    "RawData",
    "Source",
    "download",
    "drop_duplicates",
    "encode_ids",
    "is_kcore",
    "kcore",
    "leave_one_out",
    "load_prepared",
    "locate",
    "locate_raw",
    "md5sum",
    "prepare",
    "raw_files",
    "read_raw",
    "snapshot_raw",
    "synthesize",
    "test_user_subset",
    "write_llama_factory",
    "write_prepared",
    "write_recbole_atomic",
    "write_synthetic",
]
