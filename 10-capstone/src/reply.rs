//! Reading replies: step 02's RESP cursor, trimmed for the client side.
//!
//! A load generator needs only two facts about a reply: where it ends, and
//! whether it is an error. So instead of building a `Frame` (which copies
//! every bulk string into a fresh buffer) this walks the bytes in place and
//! allocates nothing: the cost of reading a reply is the cost of scanning it.

use std::fmt;

/// What a reply turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Anything but an error: `+OK`, a bulk string, an array, ...
    Value,
    /// `-ERR unknown command ...`: the text after the `-`, borrowed from the
    /// read buffer, so it is copied only if someone wants to keep it.
    Error(&'a [u8]),
}

/// Bytes that can never become a reply. The connection is then useless: we
/// can no longer tell where the next reply starts.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(&'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error in a reply: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Reads one reply from the front of `buf`: `Ok(Some((reply, n)))` when the
/// first `n` bytes hold a whole reply, `Ok(None)` when more bytes must come.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let mut cursor = Cursor { buf, pos: 0 };
    // An error is only ever a top-level `-` line: the error replies nested in
    // an array (as EXEC returns them) are part of a successful reply.
    let error = match buf.first() {
        Some(b'-') => true,
        Some(_) => false,
        None => return Ok(None),
    };
    match cursor.skip(0) {
        Ok(()) if error => Ok(Some((Reply::Error(&buf[1..cursor.pos - 2]), cursor.pos))),
        Ok(()) => Ok(Some((Reply::Value, cursor.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Invalid(why)) => Err(ProtocolError(why)),
    }
}

/// How deeply arrays may nest before we call the reply hostile.
const MAX_DEPTH: usize = 64;
/// The longest bulk string we accept (Redis's `proto-max-bulk-len`).
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;

enum Stop {
    Incomplete,
    Invalid(&'static str),
}

/// A read position in a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The bytes up to the next CRLF, moving past it.
    fn line(&mut self) -> Result<&'a [u8], Stop> {
        let rest = &self.buf[self.pos..];
        let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
            return Err(Stop::Incomplete);
        };
        if cr + 1 >= rest.len() {
            return Err(Stop::Incomplete);
        }
        self.pos += cr + 2;
        Ok(&rest[..cr])
    }

    /// Moves past one whole value of any type. Step 02's `frame`, except
    /// that it keeps nothing it reads.
    fn skip(&mut self, depth: usize) -> Result<(), Stop> {
        let Some(&kind) = self.buf.get(self.pos) else {
            return Err(Stop::Incomplete);
        };
        self.pos += 1;
        let line = self.line()?;
        let number = || parse_integer(line).ok_or(Stop::Invalid("invalid length or integer"));
        match kind {
            b'+' | b'-' => Ok(()),
            b':' => number().map(drop),
            b'_' if line.is_empty() => Ok(()),
            b'$' => match number()? {
                -1 => Ok(()),
                len @ 0..=MAX_BULK_LEN => {
                    // The data, then its CRLF; the data may contain CRLF itself.
                    let end = self.pos + len as usize + 2;
                    if self.buf.len() < end {
                        return Err(Stop::Incomplete);
                    }
                    self.pos = end;
                    Ok(())
                }
                _ => Err(Stop::Invalid("invalid bulk length")),
            },
            b'*' | b'%' if depth >= MAX_DEPTH => Err(Stop::Invalid("nesting too deep")),
            b'*' | b'%' => {
                let items = match number()? {
                    -1 if kind == b'*' => 0,
                    n @ 0.. if kind == b'*' => n,
                    // A map of n pairs is 2n values.
                    n @ 0.. => n.saturating_mul(2),
                    _ => return Err(Stop::Invalid("invalid aggregate length")),
                };
                for _ in 0..items {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            _ => Err(Stop::Invalid("unknown type byte")),
        }
    }
}

/// Parses a decimal integer as strictly as Redis's `string2ll` (copied from
/// step 02): an optional minus sign, no plus sign, no leading zeros.
fn parse_integer(digits: &[u8]) -> Option<i64> {
    let (negative, magnitude) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    match magnitude {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &digit in magnitude {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One reply of every type this client can meet.
    const EXAMPLES: &[&[u8]] = &[
        b"+OK\r\n",
        b":-12\r\n",
        b"$4\r\na\r\nb\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"_\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n:1\r\n*1\r\n+x\r\n$-1\r\n",
        b"*2\r\n-ERR inner\r\n+OK\r\n",
        b"%1\r\n+proto\r\n:3\r\n",
    ];

    #[test]
    fn finds_the_end_of_every_type() {
        for &input in EXAMPLES {
            assert_eq!(
                parse(input),
                Ok(Some((Reply::Value, input.len()))),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_truncation_is_incomplete() {
        for &input in EXAMPLES {
            for end in 0..input.len() {
                assert_eq!(parse(&input[..end]), Ok(None), "{input:?} cut at {end}");
            }
        }
    }

    #[test]
    fn a_top_level_error_carries_its_text() {
        assert_eq!(
            parse(b"-ERR nope\r\n+OK\r\n"),
            Ok(Some((Reply::Error(b"ERR nope"), 11)))
        );
    }

    #[test]
    fn rejects_what_can_never_be_a_reply() {
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b":1x\r\n").is_err());
        assert!(parse(b"$-2\r\n").is_err());
        assert!(parse(&b"*1\r\n".repeat(MAX_DEPTH + 1)).is_err());
        // A huge but legal claim is only incomplete, and reserves nothing.
        assert_eq!(parse(b"*2147483647\r\n"), Ok(None));
    }
}
