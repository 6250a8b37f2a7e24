//! Build script: an rpath to the libpython chosen by `PYO3_PYTHON` (the script host links it),
//! so `siphon` runs without `LD_LIBRARY_PATH` when Python is a pyenv or /opt build.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
