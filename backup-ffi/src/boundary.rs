//! The panic and NULL boundary of every export: `catch_unwind` around each call (the release
//! profile keeps `panic = "unwind"`), so that a bug inside the library returns [`DBB_PANIC`] with
//! a message instead of unwinding into C (which aborts the host process, a PHP worker say); a
//! NULL client or callback is [`DBB_NULL_ARGUMENT`], never dereferenced. Also the per-thread last
//! error and the C string conversions the exports share.
//!
//! How a panic becomes an error: [`guard`] (the small exports) and [`operation`] (the commands)
//! run the body inside `catch_unwind`; a caught payload becomes an [`Outcome`] of kind `panic`
//! with status [`DBB_PANIC`], recorded as the thread's last error and, for a command, written to
//! `report_out` as `{"ok": false, "error": {...}}`. The client is untouched, so it stays usable.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use backup_core::Error;

use crate::client::{Client, Finished, Outcome};
use crate::{DBB_NULL_ARGUMENT, DBB_OK, DBB_PANIC, dbb_client};

thread_local! {
    pub(crate) static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub(crate) fn set_last_error(outcome: &Outcome) {
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(outcome.json().to_string()));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

pub(crate) fn panic_outcome(name: &str, payload: &(dyn std::any::Any + Send)) -> Outcome {
    Outcome::with_code(
        "panic",
        DBB_PANIC,
        format!(
            "internal error in {name} (a panic, caught at the library boundary): {}",
            panic_message(payload)
        ),
    )
}

pub(crate) fn null_outcome(name: &str, what: &str) -> Outcome {
    Outcome::with_code("null_argument", DBB_NULL_ARGUMENT, format!("{name}: {what} is NULL"))
}

/// Runs `f` behind the panic boundary; on panic returns `on_panic`'s value and records the error.
pub(crate) fn guard<T>(name: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let outcome = panic_outcome(name, payload.as_ref());
            set_last_error(&outcome);
            on_panic
        }
    }
}

/// Turns a Rust string into a caller-owned `char*` (NUL bytes, impossible in JSON, become `?`).
pub(crate) fn into_c(text: String) -> *mut c_char {
    let text = CString::new(text).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.iter_mut().filter(|b| **b == 0).for_each(|b| *b = b'?');
        // No NUL bytes remain, so this cannot fail; an empty string is the harmless fallback.
        CString::new(bytes).unwrap_or_default()
    });
    text.into_raw()
}

/// Reads an optional borrowed C string.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string valid for the duration of the call.
pub(crate) unsafe fn borrowed_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, and the caller guarantees a NUL-terminated string that outlives the call.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map(Some).map_err(|_| Error::InvalidInput(format!("{what} is not valid UTF-8")))
}

/// The shared body of the operation exports.
///
/// # Safety
/// `client` is null or a live pointer from `dbb_client_new`; `options` is null or a valid C
/// string; `report_out` is null or valid for writing one pointer.
pub(crate) unsafe fn operation(
    name: &'static str,
    client: *const dbb_client,
    options: *const c_char,
    report_out: *mut *mut c_char,
    body: impl FnOnce(&Client, Option<&str>) -> Finished,
) -> i32 {
    clear_last_error();
    if !report_out.is_null() {
        // SAFETY: the caller guarantees `report_out` is valid for one pointer write.
        unsafe { report_out.write(std::ptr::null_mut()) };
    }
    let finished = match catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller guarantees `client` is null or a live client not being freed.
        let Some(client) = (unsafe { client.as_ref() }) else {
            return Finished::failed(null_outcome(name, "the client"));
        };
        // SAFETY: the caller guarantees `options` is null or a valid C string for this call.
        match unsafe { borrowed_str(options, "options") } {
            Ok(text) => body(&client.inner, text),
            Err(e) => Finished::failed(Outcome::from_error(&e)),
        }
    })) {
        Ok(f) => f,
        Err(payload) => Finished::failed(panic_outcome(name, payload.as_ref())),
    };
    let code = finished.error.as_ref().map_or(DBB_OK, |o| o.code);
    if let Some(outcome) = &finished.error {
        set_last_error(outcome);
    }
    if !report_out.is_null() {
        let text = match (finished.report, &finished.error) {
            (Some(report), _) => Some(report),
            (None, Some(outcome)) => Some(outcome.cli_json()),
            (None, None) => None,
        };
        if let Some(text) = text {
            // SAFETY: as above; ownership of the string passes to the caller.
            unsafe { report_out.write(into_c(text)) };
        }
    }
    code
}
