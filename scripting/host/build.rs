//! Build script: the Python version cfgs (`Py_3_12`, `Py_3_13`) and an rpath to the libpython
//! chosen by `PYO3_PYTHON`, so binaries run without `LD_LIBRARY_PATH` (feasibility-python.md §1).
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=../python");
}
