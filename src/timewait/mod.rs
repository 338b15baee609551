//! The book's last step: pacing consecutive default-port transfers around
//! the 2MSL TIME_WAIT of their shared 4-tuple (FIELD-NOTES section 4).

pub mod measure;
