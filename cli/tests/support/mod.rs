//! What the CLI's test servers share: reading a request's head.

use std::collections::BTreeMap;
use std::io::BufRead;

/// A request's line and its headers (names lower-cased), read up to the blank line.
pub fn read_head(reader: &mut impl BufRead) -> (String, BTreeMap<String, String>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (line.trim_end().to_owned(), headers)
}
