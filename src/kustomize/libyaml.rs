//! YAML events from libyaml (the `unsafe-libyaml` port serde_yaml runs on),
//! kept with what serde_yaml's values lose and kustomize depends on: the
//! scalar style (`0644` plain is a number, `"0644"` quoted a string; `>`
//! folded text goes through go-yaml's emitter), the tag and whether a
//! null was written (`~`) or left empty (`key:`). go-yaml, which
//! kustomize parses with, is itself a port of libyaml, so both read the
//! same events from the same text.
//!
//! All unsafe code of the YAML reader is here: one parser over a borrowed
//! string or a reader (streamed: only libyaml's small buffer is held),
//! turned into owned events.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug)]
pub struct Scalar {
    pub anchor: Option<String>,
    pub tag: Option<String>,
    pub value: String,
    pub style: Style,
}

#[derive(Debug)]
pub enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias(String),
    Scalar(Scalar),
    SequenceStart { anchor: Option<String> },
    SequenceEnd,
    MappingStart { anchor: Option<String> },
    MappingEnd,
}

/// A syntax error: libyaml's message and the 1-based line.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub line: usize,
}

pub struct Parser<'input> {
    raw: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    failed: bool,
    _input: PhantomData<&'input str>,
    /// The reader of [`Parser::from_reader`]; libyaml holds a pointer to it.
    reader: Option<Box<ReadInput<'input>>>,
}

/// A reader libyaml pulls bytes from, and the error that stopped it.
struct ReadInput<'input> {
    reader: Box<dyn std::io::Read + 'input>,
    error: Option<std::io::Error>,
}

/// libyaml's read callback: fills `buffer` from the [`ReadInput`] at `data`.
unsafe fn read_handler(
    data: *mut std::ffi::c_void,
    buffer: *mut u8,
    size: u64,
    size_read: *mut u64,
) -> i32 {
    // SAFETY: `data` is the boxed ReadInput set in `from_reader`, alive for
    // as long as the parser; `buffer` has room for `size` bytes.
    let (input, buffer) = unsafe {
        (
            &mut *data.cast::<ReadInput<'_>>(),
            std::slice::from_raw_parts_mut(buffer, size as usize),
        )
    };
    loop {
        match input.reader.read(buffer) {
            Ok(read) => {
                // SAFETY: libyaml passes a valid out-pointer.
                unsafe { *size_read = read as u64 };
                return 1;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                input.error = Some(err);
                return 0;
            }
        }
    }
}

impl<'input> Parser<'input> {
    /// A parser that pulls its input from `reader` as it goes.
    pub fn from_reader(reader: Box<dyn std::io::Read + 'input>) -> Parser<'input> {
        let mut raw = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        let parser = raw.as_mut_ptr();
        let mut input = Box::new(ReadInput {
            reader,
            error: None,
        });
        let data: *mut ReadInput<'input> = &mut *input;
        // SAFETY: as in `new`; `input` is boxed (it does not move) and kept
        // in the parser, whose Drop deletes libyaml's parser first.
        let initialized = unsafe { unsafe_sys::yaml_parser_initialize(parser) };
        assert!(initialized.ok, "libyaml could not allocate a parser");
        unsafe {
            unsafe_sys::yaml_parser_set_encoding(parser, unsafe_sys::YAML_UTF8_ENCODING);
            unsafe_sys::yaml_parser_set_input(parser, read_handler, data.cast());
        }
        Parser {
            raw,
            failed: false,
            _input: PhantomData,
            reader: Some(input),
        }
    }

    /// The reader's error, when reading (not the YAML) failed.
    pub fn take_read_error(&mut self) -> Option<std::io::Error> {
        self.reader.as_mut().and_then(|input| input.error.take())
    }
}

impl<'input> Parser<'input> {
    pub fn new(input: &'input str) -> Parser<'input> {
        let mut raw = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        let parser = raw.as_mut_ptr();
        // SAFETY: `parser` points to memory owned by `raw`, which lives (and
        // does not move: it is boxed) until `Drop` deletes the parser; the
        // input outlives the parser through the `'input` lifetime.
        let initialized = unsafe { unsafe_sys::yaml_parser_initialize(parser) };
        assert!(initialized.ok, "libyaml could not allocate a parser");
        unsafe {
            unsafe_sys::yaml_parser_set_encoding(parser, unsafe_sys::YAML_UTF8_ENCODING);
            unsafe_sys::yaml_parser_set_input_string(parser, input.as_ptr(), input.len() as u64);
        }
        Parser {
            raw,
            failed: false,
            _input: PhantomData,
            reader: None,
        }
    }

    /// The next event with the line (1-based) it starts on.
    pub fn next_event(&mut self) -> Result<(Event, usize), SyntaxError> {
        if self.failed {
            return Err(SyntaxError {
                message: "parser already failed".into(),
                line: 0,
            });
        }
        let parser = self.raw.as_mut_ptr();
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialized in `new`; an event filled by a
        // successful yaml_parser_parse is converted (copying every string)
        // and deleted before returning.
        unsafe {
            if unsafe_sys::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                self.failed = true;
                return Err(syntax_error(&*parser));
            }
            let event = event.as_mut_ptr();
            let converted = convert(&*event);
            let line = (*event).start_mark.line as usize + 1;
            unsafe_sys::yaml_event_delete(event);
            Ok((converted, line))
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, deleted once here.
        unsafe { unsafe_sys::yaml_parser_delete(self.raw.as_mut_ptr()) }
    }
}

unsafe fn syntax_error(parser: &unsafe_sys::yaml_parser_t) -> SyntaxError {
    let mut message =
        unsafe { c_string(parser.problem.cast()) }.unwrap_or_else(|| "invalid YAML".to_string());
    if let Some(context) = unsafe { c_string(parser.context.cast()) } {
        message = format!("{message}, {context}");
    }
    SyntaxError {
        message,
        line: parser.problem_mark.line as usize + 1,
    }
}

unsafe fn c_string(ptr: *const u8) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    let c = unsafe { CStr::from_ptr(ptr.cast()) };
    Some(String::from_utf8_lossy(c.to_bytes()).into_owned())
}

unsafe fn convert(event: &unsafe_sys::yaml_event_t) -> Event {
    unsafe {
        match event.type_ {
            unsafe_sys::YAML_STREAM_START_EVENT => Event::StreamStart,
            unsafe_sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
            unsafe_sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            unsafe_sys::YAML_ALIAS_EVENT => {
                Event::Alias(c_string(event.data.alias.anchor).unwrap_or_default())
            }
            unsafe_sys::YAML_SCALAR_EVENT => {
                let data = event.data.scalar;
                let bytes = std::slice::from_raw_parts(data.value, data.length as usize);
                Event::Scalar(Scalar {
                    anchor: c_string(data.anchor),
                    tag: c_string(data.tag),
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    style: match data.style {
                        unsafe_sys::YAML_SINGLE_QUOTED_SCALAR_STYLE => Style::SingleQuoted,
                        unsafe_sys::YAML_DOUBLE_QUOTED_SCALAR_STYLE => Style::DoubleQuoted,
                        unsafe_sys::YAML_LITERAL_SCALAR_STYLE => Style::Literal,
                        unsafe_sys::YAML_FOLDED_SCALAR_STYLE => Style::Folded,
                        _ => Style::Plain,
                    },
                })
            }
            unsafe_sys::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                anchor: c_string(event.data.sequence_start.anchor),
            },
            unsafe_sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            unsafe_sys::YAML_MAPPING_START_EVENT => Event::MappingStart {
                anchor: c_string(event.data.mapping_start.anchor),
            },
            unsafe_sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            _ => Event::StreamEnd,
        }
    }
}
