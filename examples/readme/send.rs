//! The README's sending example, compiled from the README's own text by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/send.rs"));
