//! Declares the `fuzzing` cfg (set by cargo-fuzz via `RUSTFLAGS="--cfg fuzzing"`) as expected,
//! so `unexpected_cfgs` stays quiet for the `#[cfg(fuzzing)]` exports in `src/lib.rs`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
