//! Writing a message into its row's zero blob with SQLite's
//! incremental blob I/O, which sqlx does not wrap.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

/// Pieces written at once: SQLite copies each into its page cache.
const PIECE: usize = 1 << 20;

/// Writes `bytes` into the `message` blob of row `id` (which holds a
/// zero blob of the same size). `Err` holds SQLite's extended result
/// code and message.
pub(super) fn write(db: NonNull<ffi::sqlite3>, id: i64, bytes: &[u8]) -> Result<(), (i64, String)> {
    let db = db.as_ptr();
    let error = |code: c_int| {
        // SAFETY: `db` is the connection sqlx locked for us; the
        // message is copied before any other call on it.
        let text = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) };
        (i64::from(code), text.to_string_lossy().into_owned())
    };
    if c_int::try_from(bytes.len()).is_err() {
        return Err((
            i64::from(ffi::SQLITE_TOOBIG),
            format!("a message of {} bytes is too big to store", bytes.len()),
        ));
    }
    let mut blob: *mut ffi::sqlite3_blob = std::ptr::null_mut();
    // SAFETY: valid connection, NUL-terminated names, an out pointer.
    let rc = unsafe {
        ffi::sqlite3_blob_open(
            db,
            c"main".as_ptr(),
            c"outbox_messages".as_ptr(),
            c"message".as_ptr(),
            id,
            1,
            &mut blob,
        )
    };
    if rc != ffi::SQLITE_OK {
        let e = error(rc);
        if !blob.is_null() {
            // SAFETY: closing the handle the failed open may leave.
            unsafe { ffi::sqlite3_blob_close(blob) };
        }
        return Err(e);
    }
    let mut result = Ok(());
    for (i, piece) in bytes.chunks(PIECE).enumerate() {
        // Both fit in c_int: the whole length does (checked above).
        let (n, offset) = (piece.len() as c_int, (i * PIECE) as c_int);
        // SAFETY: an open blob handle, `n` readable bytes at `piece`.
        let rc = unsafe { ffi::sqlite3_blob_write(blob, piece.as_ptr().cast(), n, offset) };
        if rc != ffi::SQLITE_OK {
            result = Err(error(rc));
            break;
        }
    }
    // SAFETY: the handle opened above, closed once.
    let rc = unsafe { ffi::sqlite3_blob_close(blob) };
    if rc != ffi::SQLITE_OK && result.is_ok() {
        result = Err(error(rc));
    }
    result
}
