//! Reading lines from standard input without std's buffer. `std::io::stdin()` reads ahead up to 8 KiB
//! into a process-wide buffer that is never zeroized: with names and a PIN piped in (a scripted
//! `keyrite run --plain`), the PIN would sit there for the rest of the run, whoever read it. Every
//! line keyrite reads from stdin therefore goes through here, one byte per read(2), so the kernel
//! keeps what has not been asked for yet and each line lands in a [`Zeroizing`] buffer only.
//! On a terminal the PIN is read by rpassword from /dev/tty, which also reads unbuffered.

use std::io::{self, ErrorKind, Read};
use zeroize::Zeroizing;

/// Longer than any PIN or name; a line this long is not typed by a person. The buffer is reserved at
/// this size up front so that it never reallocates (a reallocation would leave a copy behind).
pub const MAX_LINE_BYTES: usize = 1024;

/// One line from `source` (without its `\n` or `\r\n`), read byte by byte so that nothing after the
/// newline is consumed. `Ok(None)` at the end of input with nothing read.
pub fn read_line_unbuffered(source: &mut impl Read) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE_BYTES));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match source.read(&mut byte[..]) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_LINE_BYTES => {
                // Drain the rest of the line so the next read starts on a fresh one, then refuse.
                while source.read(&mut byte[..])? == 1 && byte[0] != b'\n' {}
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a line on standard input is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Standard input as an unbuffered reader: fd 0 itself, not std's `Stdin` (whose buffer would read
/// ahead).
pub struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::io::read(rustix::stdio::stdin(), buf).map_err(io::Error::from)
    }
}

/// One line from standard input, unbuffered; see [`read_line_unbuffered`].
pub fn stdin_line() -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    read_line_unbuffered(&mut RawStdin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn a_line_is_read_without_consuming_what_follows() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"Ann Lee\r\n12345678\nrest").unwrap();
        file.rewind().unwrap();
        let first = read_line_unbuffered(&mut file).unwrap().unwrap();
        assert_eq!(first.as_slice(), b"Ann Lee");
        // The file offset is right after the first newline: nothing of the PIN line was read ahead.
        assert_eq!(file.stream_position().unwrap(), 9);
        let pin = read_line_unbuffered(&mut file).unwrap().unwrap();
        assert_eq!(pin.as_slice(), b"12345678");
        assert_eq!(file.stream_position().unwrap(), 18);
        assert_eq!(
            read_line_unbuffered(&mut file).unwrap().unwrap().as_slice(),
            b"rest"
        );
        assert!(read_line_unbuffered(&mut file).unwrap().is_none());
    }

    #[test]
    fn an_overlong_line_is_refused_and_the_next_line_still_reads() {
        let mut input = vec![b'7'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let mut source = io::Cursor::new(input);
        let err = read_line_unbuffered(&mut source).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(!err.to_string().contains("777"), "{err}");
        let next = read_line_unbuffered(&mut source).unwrap().unwrap();
        assert_eq!(next.as_slice(), b"next");
    }

    #[test]
    fn the_buffer_never_reallocates_for_a_line_that_fits() {
        let input = vec![b'x'; MAX_LINE_BYTES];
        let line = read_line_unbuffered(&mut io::Cursor::new(input))
            .unwrap()
            .unwrap();
        assert_eq!(line.len(), MAX_LINE_BYTES);
        assert_eq!(line.capacity(), MAX_LINE_BYTES);
    }
}
