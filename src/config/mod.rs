//! Configuration: the TOML file (`file`), its validation into the model (`validate`, every error
//! with its field path, all errors at once) and the validated model itself (`model`).

pub mod model;
