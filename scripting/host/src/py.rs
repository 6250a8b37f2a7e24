//! Small raw-ffi helpers: an owned reference type, argument readers for METH_FASTCALL
//! functions, and conversion of Rust return values. All of it is used only on a script worker
//! thread whose interpreter's thread state is current (GIL held); that is the one invariant the
//! SAFETY comments below lean on, and `worker.rs` upholds it.

use std::ffi::{CString, c_char};
use std::ptr::NonNull;

use pyo3_ffi as ffi;

/// An owned (strong) reference, released on drop. Only created and dropped with the GIL of the
/// interpreter it belongs to held, on that interpreter's worker thread; never sent elsewhere.
#[derive(Debug)]
pub(crate) struct Owned(NonNull<ffi::PyObject>);

impl Owned {
    /// Take ownership of a new reference; `None` (with a Python error set) for NULL.
    ///
    /// # Safety
    /// `p` is NULL or a new strong reference, and the GIL of its interpreter is held.
    pub(crate) unsafe fn from_new(p: *mut ffi::PyObject) -> Option<Self> {
        NonNull::new(p).map(Self)
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// Give up ownership: the caller gets the strong reference.
    pub(crate) fn into_ptr(self) -> *mut ffi::PyObject {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

/// A Python str made from `s` at once (no Rust copy of the text first), for a native to
/// return text it only borrows; `Err(Set)` with the Python error set on failure. Creating a
/// str runs no Python code, so this is safe inside [`crate::worker::with_ctx`].
pub(crate) fn str_obj(s: &str) -> PyResult<Ret> {
    // SAFETY: new_str returns a new reference or NULL with an exception set.
    unsafe { Owned::from_new(new_str(s)) }
        .map(Ret::Obj)
        .ok_or(PyErrSpec::Set)
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: Owned values live only on their interpreter's worker thread with its GIL held
        // (module invariant), and hold one strong reference.
        unsafe { ffi::Py_DecRef(self.0.as_ptr()) };
    }
}

/// A Python exception to raise from a `_siphon` function.
#[derive(Debug)]
pub(crate) enum PyErrSpec {
    /// An exception is already set (a CPython call failed).
    Set,
    /// Raise TypeError.
    Type(String),
    /// Raise ValueError.
    Value(String),
    /// Raise RuntimeError.
    Runtime(String),
}

pub(crate) type PyResult<T> = Result<T, PyErrSpec>;

/// Rust values a `_siphon` function returns.
#[derive(Debug)]
pub(crate) enum Ret {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Ret>),
    Tuple(Vec<Ret>),
    /// A Python object already made (see [`str_obj`]).
    Obj(Owned),
}

impl From<Option<String>> for Ret {
    fn from(v: Option<String>) -> Self {
        v.map_or(Self::None, Self::Str)
    }
}

/// Build a new str from UTF-8.
pub(crate) fn new_str(s: &str) -> *mut ffi::PyObject {
    // SAFETY: GIL held (module invariant); pointer/length describe valid UTF-8.
    unsafe {
        ffi::PyUnicode_FromStringAndSize(s.as_ptr().cast::<c_char>(), s.len() as ffi::Py_ssize_t)
    }
}

impl Ret {
    /// Convert into a new reference (NULL with an exception set on failure).
    pub(crate) fn into_py(self) -> *mut ffi::PyObject {
        // SAFETY: (all arms) GIL held (module invariant); each constructor returns a new
        // reference or NULL with an exception set, and *_SetItem steal the item reference.
        unsafe {
            match self {
                Self::None => ffi::Py_NewRef(ffi::Py_None()),
                Self::Bool(b) => ffi::PyBool_FromLong(b.into()),
                Self::Int(i) => ffi::PyLong_FromLongLong(i),
                Self::Float(f) => ffi::PyFloat_FromDouble(f),
                Self::Str(s) => new_str(&s),
                Self::Obj(o) => o.into_ptr(),
                Self::Bytes(b) => ffi::PyBytes_FromStringAndSize(
                    b.as_ptr().cast::<c_char>(),
                    b.len() as ffi::Py_ssize_t,
                ),
                Self::List(items) => {
                    let l = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
                    if l.is_null() {
                        return l;
                    }
                    for (i, it) in items.into_iter().enumerate() {
                        let o = it.into_py();
                        if o.is_null() {
                            ffi::Py_DecRef(l);
                            return o;
                        }
                        ffi::PyList_SetItem(l, i as ffi::Py_ssize_t, o);
                    }
                    l
                }
                Self::Tuple(items) => {
                    let t = ffi::PyTuple_New(items.len() as ffi::Py_ssize_t);
                    if t.is_null() {
                        return t;
                    }
                    for (i, it) in items.into_iter().enumerate() {
                        let o = it.into_py();
                        if o.is_null() {
                            ffi::Py_DecRef(t);
                            return o;
                        }
                        ffi::PyTuple_SetItem(t, i as ffi::Py_ssize_t, o);
                    }
                    t
                }
            }
        }
    }
}

/// Raise `e` (unless already set) and return NULL.
pub(crate) fn raise(e: PyErrSpec) -> *mut ffi::PyObject {
    let (exc, msg) = match e {
        PyErrSpec::Set => return std::ptr::null_mut(),
        // SAFETY: reading the builtin exception type pointers, initialised by Py_Initialize.
        PyErrSpec::Type(m) => (unsafe { ffi::PyExc_TypeError }, m),
        // SAFETY: as above.
        PyErrSpec::Value(m) => (unsafe { ffi::PyExc_ValueError }, m),
        // SAFETY: as above.
        PyErrSpec::Runtime(m) => (unsafe { ffi::PyExc_RuntimeError }, m),
    };
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: GIL held; exc is a valid exception type and c a valid C string.
    unsafe { ffi::PyErr_SetString(exc, c.as_ptr()) };
    std::ptr::null_mut()
}

/// Finish a `_siphon` call: convert the result or raise.
pub(crate) fn finish(r: PyResult<Ret>) -> *mut ffi::PyObject {
    match r {
        Ok(v) => v.into_py(),
        Err(e) => raise(e),
    }
}

/// The positional arguments of a METH_FASTCALL call.
pub(crate) struct Args<'a> {
    args: &'a [*mut ffi::PyObject],
}

impl<'a> Args<'a> {
    /// # Safety
    /// `args` points at `n` valid borrowed object pointers that outlive `'a`, GIL held.
    pub(crate) unsafe fn new(args: *const *mut ffi::PyObject, n: ffi::Py_ssize_t) -> Self {
        let args = if n <= 0 || args.is_null() {
            &[][..]
        } else {
            // SAFETY: caller guarantees `n` valid pointers.
            unsafe { std::slice::from_raw_parts(args, n as usize) }
        };
        Self { args }
    }

    pub(crate) fn obj(&self, i: usize) -> PyResult<*mut ffi::PyObject> {
        self.args
            .get(i)
            .copied()
            .ok_or_else(|| PyErrSpec::Type(format!("missing argument {i}")))
    }

    pub(crate) fn is_none(&self, i: usize) -> bool {
        // SAFETY: reading the None singleton pointer; GIL held.
        self.args
            .get(i)
            .is_none_or(|p| *p == unsafe { ffi::Py_None() })
    }

    /// A str argument, borrowed as UTF-8 for the duration of the call.
    pub(crate) fn str(&self, i: usize) -> PyResult<&'a str> {
        let o = self.obj(i)?;
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: o is a valid borrowed object; GIL held. The returned buffer is cached in the
        // str object, which the caller's argument array keeps alive for 'a.
        let p = unsafe { ffi::PyUnicode_AsUTF8AndSize(o, &mut len) };
        if p.is_null() {
            return Err(PyErrSpec::Set);
        }
        // SAFETY: CPython returned `len` bytes of valid UTF-8 at `p` (it refuses a str it
        // cannot encode, lone surrogates, with NULL above), kept alive as said: no second
        // validation of the text on every native call.
        Ok(unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.cast::<u8>(), len as usize))
        })
    }

    pub(crate) fn opt_str(&self, i: usize) -> PyResult<Option<&'a str>> {
        if self.is_none(i) {
            Ok(None)
        } else {
            self.str(i).map(Some)
        }
    }

    pub(crate) fn int(&self, i: usize) -> PyResult<i64> {
        let o = self.obj(i)?;
        // SAFETY: valid object, GIL held.
        let v = unsafe { ffi::PyLong_AsLongLong(o) };
        // SAFETY: GIL held.
        if v == -1 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
            return Err(PyErrSpec::Set);
        }
        Ok(v)
    }

    pub(crate) fn float(&self, i: usize) -> PyResult<f64> {
        let o = self.obj(i)?;
        // SAFETY: valid object, GIL held.
        let v = unsafe { ffi::PyFloat_AsDouble(o) };
        // SAFETY: GIL held.
        if v == -1.0 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
            return Err(PyErrSpec::Set);
        }
        Ok(v)
    }

    pub(crate) fn opt_float(&self, i: usize) -> PyResult<Option<f64>> {
        if self.is_none(i) {
            Ok(None)
        } else {
            self.float(i).map(Some)
        }
    }

    pub(crate) fn truthy(&self, i: usize) -> PyResult<bool> {
        if self.args.len() <= i {
            return Ok(false);
        }
        // SAFETY: valid object, GIL held.
        match unsafe { ffi::PyObject_IsTrue(self.args[i]) } {
            -1 => Err(PyErrSpec::Set),
            v => Ok(v == 1),
        }
    }

    /// bytes or str argument as bytes.
    pub(crate) fn bytes(&self, i: usize) -> PyResult<Vec<u8>> {
        let o = self.obj(i)?;
        let mut p: *mut c_char = std::ptr::null_mut();
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: valid object, GIL held; PyBytes_Check reads the type flags.
        if unsafe { ffi::PyBytes_Check(o) } != 0 {
            // SAFETY: o is a bytes object; p/len are out-parameters.
            if unsafe { ffi::PyBytes_AsStringAndSize(o, &mut p, &mut len) } < 0 {
                return Err(PyErrSpec::Set);
            }
            // SAFETY: CPython returned a buffer of `len` bytes owned by `o`.
            return Ok(
                unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec(),
            );
        }
        self.str(i).map(|s| s.as_bytes().to_vec())
    }

    /// A list/tuple of str.
    /// The items of a tuple as arguments.
    ///
    /// # Safety
    /// `t` is an exact tuple, kept alive (GIL held) for `'a`.
    pub(crate) unsafe fn tuple(t: *mut ffi::PyObject) -> Self {
        // SAFETY: per the contract, `t` is a tuple whose `ob_item` array holds its size of
        // valid references.
        unsafe {
            let n = ffi::PyTuple_GET_SIZE(t);
            Self::new(ffi::PySequence_Fast_ITEMS(t).cast_const(), n)
        }
    }

    /// Map each item of the sequence argument `i` (borrowed while `f` runs).
    pub(crate) fn seq<T>(
        &self,
        i: usize,
        mut f: impl FnMut(*mut ffi::PyObject) -> PyResult<T>,
    ) -> PyResult<Vec<T>> {
        let o = self.obj(i)?;
        // SAFETY: GIL held; o valid; returns a new reference (a list or tuple) or NULL.
        let seq =
            unsafe { Owned::from_new(ffi::PySequence_Fast(o, c"expected a sequence".as_ptr())) }
                .ok_or(PyErrSpec::Set)?;
        // SAFETY: `seq` is the list or tuple PySequence_Fast returned.
        let n = unsafe { ffi::PySequence_Fast_GET_SIZE(seq.as_ptr()) };
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for k in 0..n {
            // SAFETY: 0 <= k < size; a borrowed item of `seq`, alive while `seq` is.
            out.push(f(unsafe {
                ffi::PySequence_Fast_GET_ITEM(seq.as_ptr(), k)
            })?);
        }
        Ok(out)
    }

    pub(crate) fn str_list(&self, i: usize) -> PyResult<Vec<String>> {
        self.seq(i, |item| {
            let one = [item];
            // SAFETY: one valid pointer (borrowed from the sequence) that lives for this call.
            let a = unsafe { Args::new(one.as_ptr(), 1) };
            Ok(a.str(0)?.to_owned())
        })
    }
}

/// Fetch and clear the current exception as text (type: message).
pub(crate) fn take_error_text() -> String {
    let exc = fetch_exception();
    let Some(exc) = exc else {
        return "unknown error".into();
    };
    // SAFETY: valid object; PyObject_Repr returns a new reference or NULL.
    let r = unsafe { Owned::from_new(ffi::PyObject_Repr(exc.as_ptr())) };
    let text = r.map(|r| {
        let one = [r.as_ptr()];
        // SAFETY: one valid pointer alive for this closure.
        let a = unsafe { Args::new(one.as_ptr(), 1) };
        a.str(0).map(str::to_owned).unwrap_or_default()
    });
    // SAFETY: GIL held; drop any error raised while formatting.
    unsafe { ffi::PyErr_Clear() };
    text.unwrap_or_else(|| "unprintable error".into())
}

/// Take the current exception (a new reference) and clear the indicator.
#[cfg(Py_3_12)]
pub(crate) fn fetch_exception() -> Option<Owned> {
    // SAFETY: GIL held; returns a new reference or NULL, and clears the error indicator.
    unsafe { Owned::from_new(ffi::PyErr_GetRaisedException()) }
}

/// Take the current exception (a new reference) and clear the indicator (3.11 API).
#[cfg(not(Py_3_12))]
pub(crate) fn fetch_exception() -> Option<Owned> {
    let (mut t, mut v, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    // SAFETY: GIL held; PyErr_Fetch hands us new references (or NULL) and clears the indicator;
    // we keep the value (or the type when there is no value) and release the rest.
    unsafe {
        ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
        ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        let keep = if v.is_null() { t } else { v };
        for p in [t, v, tb] {
            if !p.is_null() && p != keep {
                ffi::Py_DecRef(p);
            }
        }
        Owned::from_new(keep)
    }
}
