from .validation import (check_choice, check_finite, check_index, check_nonnegative, check_p,
                         check_positive_int)
from .seed import seed_everything

__all__ = ["check_choice", "check_finite", "check_index", "check_nonnegative", "check_p",
           "check_positive_int", "seed_everything"]
