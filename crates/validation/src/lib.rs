//! Profile validation for rex (work in progress).
