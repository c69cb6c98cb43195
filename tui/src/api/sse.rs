//! A server-sent events parser without I/O: bytes in, whole events out. Enough of the
//! WHATWG event-stream format for `GET /v1/logs`: `event:` and `data:` fields, comments
//! (keep-alives), events ended by a blank line, lines split anywhere across chunks.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its name (`message` when the stream gives none).
    pub event: String,
    /// Its data lines, joined by newlines.
    pub data: String,
}

/// Longest line kept; a longer one is cut (the node's log lines are far shorter).
pub const MAX_LINE: usize = 1 << 20;

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: Option<String>,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                    events.push(event);
                }
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = self.data.take()?;
            let event = if event.is_empty() {
                "message".to_string()
            } else {
                event
            };
            return Some(SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b": keep-alive\n\nevent: log\ndata: {\"a\":1}\n\nevent: log\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "log".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: "log".into(),
                        data: "x\ny".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_event_without_a_name_is_a_message() {
        let mut parser = SseParser::default();
        let events = parser.push(b"data:plain\n\n");
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "plain");
    }

    #[test]
    fn a_multibyte_character_split_between_chunks_survives() {
        let text = "event: log\ndata: café\n\n".as_bytes();
        let cut = text.len() - 3; // inside the é
        let mut parser = SseParser::default();
        let mut events = parser.push(&text[..cut]);
        events.extend(parser.push(&text[cut..]));
        assert_eq!(events[0].data, "café");
    }
}
