//! The envelope: frames, codecs and error statuses of RXON over one WebSocket.

use rxon_core::{
    Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, ResultOutcome, RxonError,
    TaskPayload, TaskResult, TokenResponse, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

/// Deepest nesting a frame may have (serde_json's own limit, applied to MessagePack too).
pub(crate) const MAX_DEPTH: usize = 128;

/// Subprotocol of the JSON codec (text frames).
pub const SUBPROTOCOL_JSON: &str = "rxon.v1.json";
/// Subprotocol of the MessagePack codec (binary frames, maps with field names).
pub const SUBPROTOCOL_MSGPACK: &str = "rxon.v1.msgpack";
/// Path prefix of the WebSocket transport; the worker id follows it.
pub const PATH_PREFIX: &str = "/_worker/rxon/";

/// How frames are encoded, chosen by subprotocol negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// JSON in text frames (`rxon.v1.json`).
    Json,
    /// MessagePack in binary frames (`rxon.v1.msgpack`).
    MessagePack,
}

impl Codec {
    /// The subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => SUBPROTOCOL_JSON,
            Codec::MessagePack => SUBPROTOCOL_MSGPACK,
        }
    }

    /// The codec of a subprotocol name.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_JSON => Some(Codec::Json),
            SUBPROTOCOL_MSGPACK => Some(Codec::MessagePack),
            _ => None,
        }
    }

    pub(crate) fn encode<T: Serialize>(self, value: &T) -> Result<Message, RxonError> {
        match self {
            Codec::Json => serde_json::to_string(value)
                .map(|t| Message::Text(t.into()))
                .map_err(|e| RxonError::invalid_input(format!("cannot encode frame: {e}"))),
            Codec::MessagePack => rmp_serde::to_vec_named(value)
                .map(|b| Message::Binary(b.into()))
                .map_err(|e| RxonError::invalid_input(format!("cannot encode frame: {e}"))),
        }
    }

    /// Decodes a data frame; `Ok(None)` for control frames. Nesting deeper than
    /// [`MAX_DEPTH`] is refused in both codecs.
    pub(crate) fn decode<T: DeserializeOwned>(
        self,
        message: &Message,
    ) -> Result<Option<T>, String> {
        match (self, message) {
            (Codec::Json, Message::Text(text)) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| format!("invalid JSON frame: {e}")),
            (Codec::MessagePack, Message::Binary(bytes)) => {
                // The same nesting limit as JSON's: the decoder recurses once per level,
                // and rmp-serde's own default (1,024) overflows a 2 MiB task stack in
                // debug builds.
                let mut de = rmp_serde::Deserializer::new(bytes.as_ref());
                de.set_max_depth(MAX_DEPTH);
                T::deserialize(&mut de)
                    .map(Some)
                    .map_err(|e| format!("invalid MessagePack frame: {e}"))
            }
            (Codec::Json, Message::Binary(_)) => Err("binary frame on a JSON session".into()),
            (Codec::MessagePack, Message::Text(_)) => {
                Err("text frame on a MessagePack session".into())
            }
            _ => Ok(None),
        }
    }
}

/// Worker → orchestrator: a request with its correlation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClientFrame {
    pub(crate) id: u64,
    pub(crate) call: Call,
}

/// The operation and its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub(crate) enum Call {
    Register(WorkerRegistration),
    Poll(PollArgs),
    Result(TaskResult),
    Heartbeat(Heartbeat),
    Progress(ProgressUpdatePayload),
    Event(WorkerEventPayload),
    Token,
    /// A token for the credential given (not the session's): the configured one, when
    /// the token service refused the session's issued token.
    TokenWith(TokenArgs),
}

/// The credential of a `token_with` request (redacted in `Debug`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TokenArgs {
    pub(crate) credential: String,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("credential", &"<redacted>")
            .finish()
    }
}

impl Call {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Call::Register(_) => "register",
            Call::Poll(_) => "poll",
            Call::Result(_) => "result",
            Call::Heartbeat(_) => "heartbeat",
            Call::Progress(_) => "progress",
            Call::Event(_) => "event",
            Call::Token | Call::TokenWith(_) => "token",
        }
    }
}

/// Arguments of a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PollArgs {
    /// How long the worker waits, in milliseconds (capped by the listener's own wait).
    pub(crate) timeout_ms: u64,
}

/// Orchestrator → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerFrame {
    /// The answer to request `id`.
    Reply { id: u64, reply: Reply },
    /// The refusal of request `id`.
    Error { id: u64, error: WireError },
    /// A command pushed by the orchestrator.
    Command { command: WorkerCommand },
}

/// A successful answer, tagged with the operation it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub(crate) enum Reply {
    Register(RegisterReply),
    Poll(Option<Box<TaskPayload>>),
    Result(ResultOutcome),
    Heartbeat(HeartbeatReply),
    Progress,
    Event,
    Token(TokenResponse),
}

/// A refusal: the HTTP status its kind maps to, the message, and a retry-after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) status: u16,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codec: Codec) {
        let frames = vec![
            ClientFrame {
                id: 1,
                call: Call::Poll(PollArgs { timeout_ms: 30_000 }),
            },
            ClientFrame {
                id: 2,
                call: Call::Token,
            },
            ClientFrame {
                id: 4,
                call: Call::Event(
                    WorkerEventPayload::new("w", "frame", rxon_core::map! {"n": 1})
                        .for_task("t", "j"),
                ),
            },
            ClientFrame {
                id: 3,
                call: Call::Register(WorkerRegistration {
                    worker_id: "w".into(),
                    ..Default::default()
                }),
            },
        ];
        for f in frames {
            let m = codec.encode(&f).unwrap();
            assert_eq!(codec.decode::<ClientFrame>(&m).unwrap(), Some(f));
        }
        let replies = vec![
            ServerFrame::Reply {
                id: 1,
                reply: Reply::Poll(None),
            },
            ServerFrame::Reply {
                id: 2,
                reply: Reply::Progress,
            },
            ServerFrame::Reply {
                id: 5,
                reply: Reply::Event,
            },
            ServerFrame::Reply {
                id: 3,
                reply: Reply::Register(RegisterReply::default()),
            },
            ServerFrame::Error {
                id: 4,
                error: WireError {
                    status: 429,
                    message: "slow".into(),
                    retry_after_ms: Some(1500),
                },
            },
            ServerFrame::Command {
                command: WorkerCommand::cancel_task("t", None),
            },
        ];
        for f in replies {
            let m = codec.encode(&f).unwrap();
            assert_eq!(codec.decode::<ServerFrame>(&m).unwrap(), Some(f));
        }
    }

    #[test]
    fn frames_round_trip_in_both_codecs() {
        round_trip(Codec::Json);
        round_trip(Codec::MessagePack);
    }

    #[test]
    fn the_json_envelope_is_what_the_docs_say() {
        let m = Codec::Json
            .encode(&ClientFrame {
                id: 7,
                call: Call::Poll(PollArgs { timeout_ms: 500 }),
            })
            .unwrap();
        assert_eq!(
            m.to_text().unwrap(),
            r#"{"id":7,"call":{"op":"poll","body":{"timeout_ms":500}}}"#
        );
        let r = Codec::Json
            .encode(&ServerFrame::Reply {
                id: 7,
                reply: Reply::Poll(None),
            })
            .unwrap();
        assert_eq!(
            r.to_text().unwrap(),
            r#"{"type":"reply","id":7,"reply":{"op":"poll","body":null}}"#
        );
    }

    #[test]
    fn wrong_frame_kinds_and_garbage_are_errors() {
        let text = Message::Text("{}".into());
        assert!(Codec::MessagePack.decode::<ClientFrame>(&text).is_err());
        let bin = Message::Binary(vec![0xc1].into());
        assert!(Codec::Json.decode::<ClientFrame>(&bin).is_err());
        assert!(Codec::MessagePack.decode::<ClientFrame>(&bin).is_err());
        let bad = Message::Text(r#"{"id":1,"call":{"op":"explode"}}"#.into());
        assert!(Codec::Json.decode::<ClientFrame>(&bad).is_err());
        assert_eq!(
            Codec::Json
                .decode::<ClientFrame>(&Message::Ping(vec![].into()))
                .unwrap(),
            None
        );
    }
}

#[cfg(test)]
mod props {
    //! Frames are what a peer controls: any bytes, in either codec, decode to a frame or
    //! an error, never a panic or a stack overflow.
    use super::*;
    use proptest::prelude::*;

    fn frames() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            // Valid frames with bytes flipped: deep into the decoders, not just the header.
            (
                any::<u64>(),
                "[a-z_-]{0,10}",
                prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)
            )
                .prop_map(|(id, name, flips)| {
                    let frame = ClientFrame {
                        id,
                        call: Call::Register(WorkerRegistration {
                            worker_id: name,
                            supported_skills: vec!["a".into()],
                            ..Default::default()
                        }),
                    };
                    let mut bytes = rmp_serde::to_vec_named(&frame).unwrap_or_default();
                    for (at, b) in flips {
                        if !bytes.is_empty() {
                            let i = at % bytes.len();
                            bytes[i] ^= b;
                        }
                    }
                    bytes
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn any_frame_decodes_or_is_refused(bytes in frames()) {
            let binary = Message::Binary(bytes.clone().into());
            let _ = Codec::MessagePack.decode::<ClientFrame>(&binary);
            let _ = Codec::MessagePack.decode::<ServerFrame>(&binary);
            let text = Message::Text(String::from_utf8_lossy(&bytes).into_owned().into());
            let _ = Codec::Json.decode::<ClientFrame>(&text);
            let _ = Codec::Json.decode::<ServerFrame>(&text);
        }
    }

    /// MessagePack frames nesting arrays 1,000 deep (under rmp-serde's own limit, which
    /// overflowed a 2 MiB stack in debug builds) and 100,000 deep (one byte per level)
    /// are refused by the frame decoder's depth limit, on a thread with a tokio
    /// worker's 2 MiB stack.
    #[test]
    fn deeply_nested_msgpack_is_refused_without_overflowing_the_stack() {
        for depth in [1_000, 100_000] {
            nested_msgpack_is_refused(depth);
        }
    }

    fn nested_msgpack_is_refused(depth: usize) {
        let mut frame = Vec::new();
        // {"id": 1, "call": {"op": "result", "body": {... "data": {"x": [[[...]]]}}}}
        frame.extend_from_slice(&[0x82, 0xa2, b'i', b'd', 0x01, 0xa4, b'c', b'a', b'l', b'l']);
        frame.extend_from_slice(&[0x82, 0xa2, b'o', b'p', 0xa6]);
        frame.extend_from_slice(b"result");
        frame.extend_from_slice(&[0xa4, b'b', b'o', b'd', b'y', 0x81, 0xa4]);
        frame.extend_from_slice(b"data");
        frame.extend_from_slice(&[0x81, 0xa1, b'x']);
        frame.extend(std::iter::repeat_n(0x91u8, depth));
        frame.push(0xc0);
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let message = Message::Binary(frame.into());
                Codec::MessagePack
                    .decode::<ClientFrame>(&message)
                    .map(|_| ())
            })
            .unwrap()
            .join()
            .expect("the decoder did not overflow the stack");
        let error = outcome.unwrap_err();
        assert!(error.contains("depth"), "{error}");
    }
}
