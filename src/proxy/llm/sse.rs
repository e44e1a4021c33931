//! Incremental Server-Sent Events splitting: bytes go in as they arrive, complete events (up
//! to and including their blank line) come out. Only the unfinished tail of the stream is
//! kept, never the stream.

/// The longest partial event kept; a longer one is passed on unparsed.
pub const MAX_EVENT: usize = 1 << 20;

/// Splits a byte stream into SSE events across chunk boundaries.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
    /// How far `pending` has been searched for a boundary.
    scanned: usize,
}

impl Splitter {
    /// Appends `chunk` and calls `event` with each complete event, in order.
    pub fn push(&mut self, chunk: &[u8], mut event: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = self.scanned.max(start);
        while let Some(end) = boundary(&self.pending, i) {
            event(&self.pending[start..end]);
            start = end;
            i = end;
        }
        self.pending.drain(..start);
        // Rescan the last two bytes next time: a boundary may straddle the chunks.
        self.scanned = self.pending.len().saturating_sub(2);
    }

    /// The unfinished tail (taken), e.g. at the end of the stream or when it grew too long.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.pending)
    }

    /// Bytes of the unfinished tail.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// The end of the first event in `buf` whose blank line starts at or after `from`: a `\n`
/// followed by `\n` or `\r\n`.
fn boundary(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let pos = i + buf[i..].iter().position(|&b| b == b'\n')?;
        match (buf.get(pos + 1), buf.get(pos + 2)) {
            (Some(b'\n'), _) => return Some(pos + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(pos + 3),
            _ => i = pos + 1,
        }
    }
    None
}

/// The `data:` payload of an event (several `data:` lines joined by `\n`), if it has one.
pub fn data(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut out: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some(rest) = line.strip_prefix("data:") else {
            continue;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match &mut out {
            Some(s) => {
                s.push('\n');
                s.push_str(rest);
            }
            None => out = Some(rest.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut s = Splitter::default();
        let mut events = Vec::new();
        for chunk in chunks {
            s.push(chunk, |e| {
                events.push(String::from_utf8(e.to_vec()).unwrap())
            });
        }
        (events, s.take_pending())
    }

    #[test]
    fn events_split_across_chunks() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata: y\n\ndata: tail";
        let whole = split_all(&[stream]);
        assert_eq!(
            whole.0,
            [
                "data: {\"a\":1}\n\n",
                "data: {\"b\":2}\r\n\r\n",
                "event: x\ndata: y\n\n"
            ]
        );
        assert_eq!(whole.1, b"data: tail");
        // Every split point, including inside the blank line, gives the same events.
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(split_all(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split_all(&bytes), whole);
    }

    #[test]
    fn data_lines() {
        assert_eq!(data(b"data: {\"a\":1}\n\n").as_deref(), Some("{\"a\":1}"));
        assert_eq!(data(b"event: e\r\ndata:x\r\n\r\n").as_deref(), Some("x"));
        assert_eq!(data(b"data: a\ndata: b\n\n").as_deref(), Some("a\nb"));
        assert_eq!(data(b": comment\n\n"), None);
    }
}
