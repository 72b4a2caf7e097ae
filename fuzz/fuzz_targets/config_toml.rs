//! Arbitrary text into `config::parse`: never a panic; every error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = config::parse(text, Path::new("/fuzz/vpngw.toml")) {
        assert!(e.to_string().starts_with("/fuzz/vpngw.toml:"), "error without file name: {e}");
    }
});
