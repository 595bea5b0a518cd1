from .checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from .interrupt import DeferredInterrupt, TrainingInterrupted
from .io import (
                 atomic_open,
                 atomic_write_text,
                 file_digest,
                 file_sha256,
                 prepare_output_dir,
                 provenance,
)
from .seed import deterministic_algorithms, seed_everything
from .validation import (
                 check_choice,
                 check_finite,
                 check_index,
                 check_nonnegative,
                 check_p,
                 check_positive_int,
)

__all__ = ["check_choice", "check_finite", "check_index", "check_nonnegative", "check_p",
           "check_positive_int", "seed_everything", "deterministic_algorithms",
           "atomic_save", "load_checkpoint", "rng_state", "set_rng_state", "DeferredInterrupt",
           "TrainingInterrupted",
           "atomic_open", "atomic_write_text", "file_digest", "file_sha256", "prepare_output_dir",
           "provenance"]
