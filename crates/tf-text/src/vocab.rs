//! Reading a text file into a lookup table as `InitializeTableFromTextFileV2` does
//! (`tf.lookup.TextFileInitializer`, `index_table_from_file`).
//!
//! Lines end at `\n` (a trailing `\r` is dropped), the last one may lack it; an empty line is
//! an error; with `vocab_size` only that many lines are read and fewer is an error; a key
//! seen twice with a different value is an error (the hash table's insert rule).

use rustc_hash::FxHashMap as HashMap;

/// What a column of the file gives: TF's `TextFileIndex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// `WHOLE_LINE` (-2).
    WholeLine,
    /// `LINE_NUMBER` (-1), plus the initializer's offset.
    LineNumber,
    /// Field `k` of the line split on the delimiter.
    Field(usize),
}

impl Column {
    /// From the op's `key_index` / `value_index` attribute.
    pub fn from_index(i: i64) -> Result<Column, String> {
        match i {
            -2 => Ok(Column::WholeLine),
            -1 => Ok(Column::LineNumber),
            k if k >= 0 => Ok(Column::Field(k as usize)),
            k => Err(format!("column index {k} is not valid")),
        }
    }
}

/// One key or value read from the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    Str(Vec<u8>),
    Int(i64),
}

/// How to read the file: the initializer op's attributes.
#[derive(Clone, Debug)]
pub struct TextFileSpec {
    pub key: Column,
    pub value: Column,
    /// Whether the key / value dtype is an integer (a field is parsed as a number).
    pub key_is_int: bool,
    pub value_is_int: bool,
    pub delimiter: Vec<u8>,
    /// Lines to read (`None`: all).
    pub vocab_size: Option<usize>,
    pub offset: i64,
}

impl TextFileSpec {
    /// `index_table_from_file`: the whole line maps to its line number.
    pub fn vocabulary() -> TextFileSpec {
        TextFileSpec {
            key: Column::WholeLine,
            value: Column::LineNumber,
            key_is_int: false,
            value_is_int: true,
            delimiter: b"\t".to_vec(),
            vocab_size: None,
            offset: 0,
        }
    }
}

/// Errors reading a vocabulary file.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error(
        "{file}: empty line found at line {line} (TensorFlow's TextFileInitializer rejects it)"
    )]
    EmptyLine { file: String, line: usize },
    #[error("{file}: token {token:?} appears twice (lines {first} and {second})")]
    Duplicate {
        file: String,
        token: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{file}: a vocabulary with {oov_buckets} OOV buckets and no tokens cannot map anything"
    )]
    NoIds { file: String, oov_buckets: usize },
    #[error("{file}: line {line} has {found} columns; column {want} is needed")]
    Columns {
        file: String,
        line: usize,
        found: usize,
        want: usize,
    },
    #[error("{file}: line {line}: {text:?} is not an integer")]
    NotInteger {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}: line {line}: its number plus the table's offset {offset} overflows")]
    Offset {
        file: String,
        line: usize,
        offset: i64,
    },
    #[error("{file}: has {found} lines; the table asks for vocab_size = {want}")]
    TooFewLines {
        file: String,
        found: usize,
        want: usize,
    },
}

/// The table's content: key → value, and each key's line (1-based) for error messages.
pub type Table = HashMap<Entry, Entry>;

/// Reads `bytes` (the file named `file` in errors) into a table.
pub fn read_table(file: &str, bytes: &[u8], spec: &TextFileSpec) -> Result<Table, VocabError> {
    let mut table: Table = HashMap::default();
    let mut first_line: HashMap<Entry, usize> = HashMap::default();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = 0usize;
    if !bytes.is_empty() {
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if spec.vocab_size.is_some_and(|n| i >= n) {
                break;
            }
            lines = i + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                return Err(VocabError::EmptyLine {
                    file: file.into(),
                    line: i + 1,
                });
            }
            let fields: Vec<&[u8]> = match (spec.key, spec.value) {
                (Column::Field(_), _) | (_, Column::Field(_)) => {
                    let d = spec.delimiter.first().copied().unwrap_or(b'\t');
                    line.split(|&b| b == d).collect()
                }
                _ => Vec::new(),
            };
            let get = |col: Column, is_int: bool| -> Result<Entry, VocabError> {
                let text = match col {
                    Column::LineNumber => {
                        return (i as i64)
                            .checked_add(spec.offset)
                            .map(Entry::Int)
                            .ok_or_else(|| VocabError::Offset {
                                file: file.into(),
                                line: i + 1,
                                offset: spec.offset,
                            })
                    }
                    Column::WholeLine => line,
                    Column::Field(k) => *fields.get(k).ok_or_else(|| VocabError::Columns {
                        file: file.into(),
                        line: i + 1,
                        found: fields.len(),
                        want: k,
                    })?,
                };
                if is_int {
                    std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .map(Entry::Int)
                        .ok_or_else(|| VocabError::NotInteger {
                            file: file.into(),
                            line: i + 1,
                            text: String::from_utf8_lossy(text).into_owned(),
                        })
                } else {
                    Ok(Entry::Str(text.to_vec()))
                }
            };
            let key = get(spec.key, spec.key_is_int)?;
            let value = get(spec.value, spec.value_is_int)?;
            match table.get(&key) {
                Some(v) if *v != value => {
                    return Err(VocabError::Duplicate {
                        file: file.into(),
                        token: match &key {
                            Entry::Str(s) => String::from_utf8_lossy(s).into_owned(),
                            Entry::Int(k) => k.to_string(),
                        },
                        first: first_line.get(&key).copied().unwrap_or(0),
                        second: i + 1,
                    })
                }
                Some(_) => {}
                None => {
                    first_line.insert(key.clone(), i + 1);
                    table.insert(key, value);
                }
            }
        }
    }
    if let Some(want) = spec.vocab_size {
        if lines < want {
            return Err(VocabError::TooFewLines {
                file: file.into(),
                found: lines,
                want,
            });
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Entry {
        Entry::Str(x.as_bytes().to_vec())
    }

    #[test]
    fn vocabulary_rules() {
        let t = read_table("v", b"cat\r\ndog \nlast", &TextFileSpec::vocabulary()).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[&s("cat")], Entry::Int(0));
        assert_eq!(t[&s("dog ")], Entry::Int(1));
        assert_eq!(t[&s("last")], Entry::Int(2));
        assert!(matches!(
            read_table("v", b"a\n\nb\n", &TextFileSpec::vocabulary()),
            Err(VocabError::EmptyLine { line: 2, .. })
        ));
        assert!(matches!(
            read_table("v", b"a\nb\na\n", &TextFileSpec::vocabulary()),
            Err(VocabError::Duplicate {
                first: 1,
                second: 3,
                ..
            })
        ));
        let mut spec = TextFileSpec::vocabulary();
        spec.vocab_size = Some(2);
        assert_eq!(read_table("v", b"a\nb\nc\n", &spec).unwrap().len(), 2);
        let mut far = TextFileSpec::vocabulary();
        far.offset = i64::MAX;
        assert!(matches!(
            read_table("v", b"a\nb\n", &far),
            Err(VocabError::Offset { line: 2, .. })
        ));
        spec.vocab_size = Some(5);
        assert!(matches!(
            read_table("v", b"a\nb\n", &spec),
            Err(VocabError::TooFewLines { found: 2, .. })
        ));
    }

    #[test]
    fn columns() {
        let spec = TextFileSpec {
            key: Column::Field(1),
            value: Column::Field(0),
            key_is_int: false,
            value_is_int: true,
            delimiter: b"\t".to_vec(),
            vocab_size: None,
            offset: 0,
        };
        let t = read_table("v", b"7\tcat\n9\tdog\n", &spec).unwrap();
        assert_eq!(t[&s("dog")], Entry::Int(9));
        assert!(matches!(
            read_table("v", b"7\n", &spec),
            Err(VocabError::Columns { .. })
        ));
        assert!(matches!(
            read_table("v", b"x\tcat\n", &spec),
            Err(VocabError::NotInteger { .. })
        ));
    }
}
