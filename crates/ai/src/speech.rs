//! Speech to text through any OpenAI-compatible `audio/transcriptions` endpoint: OpenAI,
//! faster-whisper and whisper.cpp servers, and the gateways of hosted models.
//!
//! # Why it behaves as it does
//! - **The format is judged by its bytes.** [`AudioFormat::sniff`] recognises WAV, WebM,
//!   Ogg and MP3 by their magic bytes, so nothing else is ever uploaded, and the upload is
//!   named after what it really is (servers pick their decoder from the file name).
//! - **Duration from the container, never from decoding.** [`duration`] reads a WAV
//!   header, the last granule position of an Ogg stream, the MP3 frame headers, or a WebM
//!   file's declared duration or last block time (browsers' `MediaRecorder` declares none).
//!   Only container structure is read, in one bounded pass, so a recording over the limit
//!   is refused before anything is spent on it. A file whose length cannot be told that way
//!   gets `None`; callers bound it by size and leave the rest to the server.
//! - **Retries, because transcribing is idempotent.** Connection failures and
//!   429/502/503/504 are retried with exponential backoff and jitter (or after the
//!   server's `Retry-After`). A 500 is not: a server that crashed on this recording (some
//!   answer so to audio they cannot decode) will crash on it again.
//! - **One deadline per attempt.** `request_timeout` covers the upload, the transcription
//!   and the answer; `connect_timeout` bounds TCP/TLS set-up.
//! - **Secrets and privacy.** The API key is sent as a bearer token marked sensitive and is
//!   redacted from `Debug`; neither it, the audio nor the transcript is logged.
//! - **Cancellation.** The request is owned by the future: dropping it (a client that went
//!   away) closes the connection.
//!
//! The HTTP client is set up as the chat backend's is (`openai.rs`: rustls on aws-lc, no
//! redirects).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::openai::{backoff, chain, read_error_message, retry_after, tls_config};

/// Largest transcription answer read, in bytes: two minutes of speech are a few kilobytes
/// of text; the bound keeps a misbehaving server from making us buffer without limit.
const ANSWER_LIMIT: usize = 1024 * 1024;

/// Where and how to reach an OpenAI-compatible transcription server.
#[derive(Clone)]
pub struct SpeechConfig {
    /// The API root, ending in the version segment, e.g. `http://127.0.0.1:8000/v1`;
    /// `/audio/transcriptions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set; local servers usually need none.
    pub api_key: Option<String>,
    /// The model name the server knows (`whisper-1` for OpenAI), sent with every request.
    pub model: String,
    /// Longest time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest time for one attempt: sending the audio, transcribing it, reading the answer.
    pub request_timeout: Duration,
    /// Retries after the first attempt (so up to `max_retries + 1` requests).
    pub max_retries: u32,
    /// Delay before the first retry; it doubles with each retry, with jitter.
    pub initial_backoff: Duration,
    /// Cap on any delay between attempts, including one asked for by `Retry-After`.
    pub max_backoff: Duration,
}

impl SpeechConfig {
    /// A configuration with the default timeouts and retry policy and no API key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for SpeechConfig {
    /// Shows everything but the API key, so configs can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeechConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Why a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The client cannot be set up (invalid URL, no trusted roots for `https`).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached, or the connection broke (after retries).
    #[error("cannot reach the speech server: {0}")]
    Transport(String),
    /// An attempt took longer than `request_timeout`.
    #[error("the speech server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server was busy or overloaded (429, 502, 503, 504) on every attempt.
    #[error("the speech server is busy: {0}")]
    Busy(String),
    /// The server answered with an error status that retrying does not change.
    #[error("the speech server refused the request (HTTP {status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's message (truncated).
        message: String,
    },
    /// The server answered 2xx with something that is not a transcription.
    #[error("the speech server answered something unexpected: {0}")]
    Protocol(String),
}

/// An audio container the transcription endpoint accepts, recognised by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE (what `espeak-ng -w` and most recorders write).
    Wav,
    /// WebM (what browsers' `MediaRecorder` writes, usually Opus inside).
    Webm,
    /// Ogg (Opus or Vorbis inside; Firefox's `MediaRecorder`).
    Ogg,
    /// MPEG audio layer III, with or without an ID3v2 tag.
    Mp3,
}

impl AudioFormat {
    /// Every format, for documentation and tests.
    pub const ALL: [AudioFormat; 4] = [Self::Wav, Self::Webm, Self::Ogg, Self::Mp3];

    /// The format of `bytes`, judged by their first bytes only; `None` for anything else.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
            return Some(Self::Wav);
        }
        if bytes.starts_with(b"OggS") {
            return Some(Self::Ogg);
        }
        // An EBML header whose DocType is "webm" (Matroska proper is not accepted by
        // OpenAI's endpoint). The DocType sits within the header's first few dozen bytes.
        if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            let head = &bytes[..bytes.len().min(64)];
            return head
                .windows(4)
                .any(|window| window == b"webm")
                .then_some(Self::Webm);
        }
        if bytes.starts_with(b"ID3") || is_mp3_frame_header(bytes) {
            return Some(Self::Mp3);
        }
        None
    }

    /// The short name: `wav`, `webm`, `ogg`, `mp3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Webm => "webm",
            Self::Ogg => "ogg",
            Self::Mp3 => "mp3",
        }
    }

    /// The media type sent with the upload.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Webm => "audio/webm",
            Self::Ogg => "audio/ogg",
            Self::Mp3 => "audio/mpeg",
        }
    }
}

/// Whether `bytes` start with an MPEG-1/2/2.5 layer III frame header: 11 sync bits, a
/// valid version, layer III, and a bitrate and sample rate that are not the reserved
/// values. (AAC's ADTS shares the sync bits but has layer 0, so it is not taken for MP3.)
fn is_mp3_frame_header(bytes: &[u8]) -> bool {
    let [first, second, third, ..] = *bytes else {
        return false;
    };
    let sync = first == 0xFF && second & 0xE0 == 0xE0;
    let version = (second >> 3) & 0b11;
    let layer = (second >> 1) & 0b11;
    let bitrate = third >> 4;
    let sample_rate = (third >> 2) & 0b11;
    sync && version != 0b01 && layer == 0b01 && bitrate != 0b1111 && sample_rate != 0b11
}

/// How long the WAV recording `bytes` plays, from its `fmt ` chunk's byte rate and the
/// bytes of its `data` chunk actually present (a header may declare more than was sent,
/// or "unknown" as streaming recorders do). `None` when the header is malformed.
pub fn wav_duration(bytes: &[u8]) -> Option<Duration> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut byte_rate: Option<u32> = None;
    let mut offset = 12usize;
    // Each turn moves past one chunk header (8 bytes at least), so this ends.
    while offset.checked_add(8)? <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().ok()?);
        let body = offset + 8;
        let size = usize::try_from(size).ok()?;
        match id {
            b"fmt " => {
                // audio format (2), channels (2), sample rate (4), byte rate (4), ...
                let field = bytes.get(body + 8..body + 12)?;
                byte_rate = Some(u32::from_le_bytes(field.try_into().ok()?));
            }
            b"data" => {
                let rate = byte_rate.filter(|rate| *rate > 0)?;
                let present = size.min(bytes.len() - body);
                let present = u64::try_from(present).ok()?;
                return Some(Duration::from_secs_f64(present as f64 / f64::from(rate)));
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        offset = body.checked_add(size)?.checked_add(size % 2)?;
    }
    None
}

/// How long the recording `bytes` (of `format`) plays, from its container alone; `None`
/// when that cannot be told (a damaged or unusual file).
pub fn duration(format: AudioFormat, bytes: &[u8]) -> Option<Duration> {
    match format {
        AudioFormat::Wav => wav_duration(bytes),
        AudioFormat::Ogg => ogg_duration(bytes),
        AudioFormat::Mp3 => mp3_duration(bytes),
        AudioFormat::Webm => webm_duration(bytes),
    }
}

/// An Ogg stream's length: the last granule position of its first logical stream, in
/// samples of that stream's rate (Opus always counts at 48 kHz, less its pre-skip; Vorbis
/// at its sample rate, from its identification header).
fn ogg_duration(bytes: &[u8]) -> Option<Duration> {
    let mut offset = 0usize;
    let mut stream: Option<(u32, f64, u64)> = None; // serial, rate, samples to skip
    let mut last_granule: Option<u64> = None;
    // Every page has a 27-byte header, so each turn moves forward.
    while let Some(header) = bytes.get(offset..offset.checked_add(27)?) {
        if &header[..4] != b"OggS" {
            break;
        }
        let granule = u64::from_le_bytes(header[6..14].try_into().ok()?);
        let serial = u32::from_le_bytes(header[14..18].try_into().ok()?);
        let segments = usize::from(header[26]);
        let table = bytes.get(offset + 27..offset + 27 + segments)?;
        let body = offset + 27 + segments;
        let length: usize = table.iter().map(|&lacing| usize::from(lacing)).sum();
        if stream.is_none() {
            let packet = bytes.get(body..body + length)?;
            stream = Some(if packet.starts_with(b"OpusHead") && packet.len() >= 12 {
                let pre_skip = u16::from_le_bytes(packet[10..12].try_into().ok()?);
                (serial, 48_000.0, u64::from(pre_skip))
            } else if packet.starts_with(b"\x01vorbis") && packet.len() >= 16 {
                let rate = u32::from_le_bytes(packet[12..16].try_into().ok()?);
                (serial, f64::from(rate), 0)
            } else {
                return None;
            });
        }
        // A page on which no packet ends has granule position -1.
        if stream.is_some_and(|(first, ..)| first == serial) && granule != u64::MAX {
            last_granule = Some(granule);
        }
        offset = body.checked_add(length)?;
    }
    let (_, rate, skip) = stream?;
    let samples = last_granule?.saturating_sub(skip);
    (rate > 0.0).then(|| Duration::from_secs_f64(samples as f64 / rate))
}

/// An MP3 file's length: the frames it holds, counted by walking their headers from the
/// first (after an ID3v2 tag) until the frames stop.
fn mp3_duration(bytes: &[u8]) -> Option<Duration> {
    let mut offset = 0usize;
    if bytes.starts_with(b"ID3") && bytes.len() >= 10 {
        // A synchsafe size (7 bits a byte) after the 10-byte header, and a footer if flagged.
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |size, &byte| (size << 7) | usize::from(byte & 0x7F));
        let footer = if bytes[5] & 0x10 != 0 { 10 } else { 0 };
        offset = 10 + size + footer;
    }
    let mut seconds = 0.0f64;
    let mut frames = 0u32;
    // A valid frame is 24 bytes long at least (8 kbit/s at 24 kHz), so each turn moves
    // forward.
    while let Some(header) = bytes.get(offset..offset.saturating_add(4)) {
        if !is_mp3_frame_header(header) {
            break;
        }
        let mpeg1 = (header[1] >> 3) & 0b11 == 0b11;
        let bitrate_index = usize::from(header[2] >> 4);
        let rate_index = usize::from((header[2] >> 2) & 0b11);
        let padding = usize::from((header[2] >> 1) & 1);
        const V1_KBPS: [u32; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const V2_KBPS: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let kbps = if mpeg1 { V1_KBPS } else { V2_KBPS }[bitrate_index];
        let base_rate = [44_100u32, 48_000, 32_000][rate_index];
        let rate = match (header[1] >> 3) & 0b11 {
            0b11 => base_rate,
            0b10 => base_rate / 2,
            _ => base_rate / 4, // MPEG 2.5
        };
        if kbps == 0 {
            // Free format: the frame length is not in the header.
            break;
        }
        let (samples, factor) = if mpeg1 { (1152u32, 144u32) } else { (576, 72) };
        let length = usize::try_from(factor * kbps * 1000 / rate).ok()? + padding;
        seconds += f64::from(samples) / f64::from(rate);
        frames += 1;
        offset = offset.checked_add(length.max(4))?;
    }
    (frames > 0).then(|| Duration::from_secs_f64(seconds))
}

/// A WebM file's length: the `Duration` of its `Info` when declared, else the time of its
/// last block (cluster time plus the block's offset), in the file's timecode scale.
/// Browsers' `MediaRecorder` writes clusters of unknown size and no duration, so the
/// elements are read as one flat sequence: the masters that matter are entered, all other
/// elements skipped by their size.
fn webm_duration(bytes: &[u8]) -> Option<Duration> {
    const SEGMENT: u64 = 0x1853_8067;
    const INFO: u64 = 0x1549_A966;
    const CLUSTER: u64 = 0x1F43_B675;
    const BLOCK_GROUP: u64 = 0xA0;
    const TIMECODE_SCALE: u64 = 0x2A_D7B1;
    const DURATION: u64 = 0x4489;
    const CLUSTER_TIMECODE: u64 = 0xE7;
    const SIMPLE_BLOCK: u64 = 0xA3;
    const BLOCK: u64 = 0xA1;

    let mut scale_ns = 1_000_000u64;
    let mut declared: Option<f64> = None;
    let mut cluster_time = 0u64;
    let mut last_block: Option<u64> = None;
    let mut offset = 0usize;
    // Each turn moves past an ID and a size (two bytes at least).
    while offset < bytes.len() {
        let Some((Some(id), id_length)) = vint(&bytes[offset..], false) else {
            break;
        };
        let Some((size, size_length)) = vint(&bytes[offset + id_length..], true) else {
            break;
        };
        let data = offset + id_length + size_length;
        if matches!(id, SEGMENT | INFO | CLUSTER | BLOCK_GROUP) {
            offset = data;
            continue;
        }
        // Only masters may have an unknown size; anything else must fit.
        let size = usize::try_from(size?).ok()?;
        let Some(value) = bytes.get(data..data.saturating_add(size)) else {
            break;
        };
        match id {
            TIMECODE_SCALE => scale_ns = unsigned(value)?,
            DURATION => {
                declared = match value.len() {
                    4 => Some(f64::from(f32::from_be_bytes(value.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(value.try_into().ok()?)),
                    _ => None,
                }
            }
            CLUSTER_TIMECODE => cluster_time = unsigned(value)?,
            SIMPLE_BLOCK | BLOCK => {
                // Track number (a vint), then the time relative to the cluster (i16).
                let (_, track_length) = vint(value, true)?;
                let relative = value.get(track_length..track_length + 2)?;
                let relative = i16::from_be_bytes(relative.try_into().ok()?);
                let time = cluster_time.saturating_add_signed(i64::from(relative));
                last_block = Some(last_block.map_or(time, |last| last.max(time)));
            }
            _ => {}
        }
        offset = data + size;
    }
    let ticks = match (declared, last_block) {
        (Some(declared), _) if declared.is_finite() && declared > 0.0 => declared,
        (_, Some(last)) => last as f64,
        _ => return None,
    };
    let seconds = ticks * scale_ns as f64 / 1e9;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// An EBML variable-length integer at the start of `bytes` and its length in bytes: an
/// element ID keeps its length marker (`data` false); a size loses it (`data` true), and a
/// size of all ones ("unknown") is `None` inside the `Some`.
fn vint(bytes: &[u8], data: bool) -> Option<(Option<u64>, usize)> {
    let first = *bytes.first()?;
    let length = usize::try_from(first.leading_zeros()).ok()? + 1;
    if length > 8 {
        return None;
    }
    let raw = bytes.get(..length)?;
    let mut value = if data {
        u64::from(first) & (0xFF >> length)
    } else {
        u64::from(first)
    };
    for &byte in &raw[1..] {
        value = (value << 8) | u64::from(byte);
    }
    let all_ones = (1u64 << (7 * length)) - 1;
    let unknown = data && value == all_ones;
    Some(((!unknown).then_some(value), length))
}

/// A big-endian unsigned integer element of at most 8 bytes.
fn unsigned(value: &[u8]) -> Option<u64> {
    (value.len() <= 8).then(|| {
        value
            .iter()
            .fold(0u64, |number, &byte| (number << 8) | u64::from(byte))
    })
}

/// A client for `POST {base_url}/audio/transcriptions`. Cheap to share: one connection
/// pool serves every request.
#[derive(Debug)]
pub struct SpeechClient {
    /// Pooled HTTP client, built once with the connect timeout and TLS settings.
    client: reqwest::Client,
    /// `{base_url}/audio/transcriptions`, parsed once.
    endpoint: Url,
    /// The configuration it was built from.
    config: SpeechConfig,
}

impl SpeechClient {
    /// Builds the client. Fails with [`SpeechError::Config`] when the URL is invalid or,
    /// for `https`, when the system has no trusted root certificates.
    pub fn new(config: SpeechConfig) -> Result<Self, SpeechError> {
        let url = format!(
            "{}/audio/transcriptions",
            config.base_url.trim_end_matches('/')
        );
        let endpoint = Url::parse(&url).map_err(|e| {
            SpeechError::Config(format!(
                "invalid speech base URL {:?}: {e}",
                config.base_url
            ))
        })?;
        let https = match endpoint.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(SpeechError::Config(format!(
                    "the speech base URL must be http or https, not {other}"
                )));
            }
        };
        let tls = tls_config(https).map_err(|e| SpeechError::Config(e.to_string()))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(config.connect_timeout)
            // A redirected POST may lose its body; better to say where the server points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                SpeechError::Config(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        Ok(Self {
            client,
            endpoint,
            config,
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &SpeechConfig {
        &self.config
    }

    /// The text spoken in `audio` (of `format`), as the server returns it (untrimmed).
    /// `language` (ISO-639-1, e.g. `en`) skips the server's language detection.
    pub async fn transcribe(
        &self,
        audio: Bytes,
        format: AudioFormat,
        language: Option<&str>,
    ) -> Result<String, SpeechError> {
        let mut retry = 0;
        loop {
            let (error, server_delay) = match self.attempt(audio.clone(), format, language).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if retry >= self.config.max_retries {
                return Err(error);
            }
            let delay = server_delay
                .map(|delay| delay.min(self.config.max_backoff))
                .unwrap_or_else(|| {
                    backoff(self.config.initial_backoff, self.config.max_backoff, retry)
                });
            tracing::debug!(retry, ?delay, %error, "transcription attempt failed; retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One request, from sending the audio to the parsed answer.
    async fn attempt(&self, audio: Bytes, format: AudioFormat, language: Option<&str>) -> Attempt {
        let deadline = Instant::now() + self.config.request_timeout;
        let length = u64::try_from(audio.len()).unwrap_or(u64::MAX);
        // With a known length the form is sent with `Content-Length`, not chunked.
        let file = Part::stream_with_length(reqwest::Body::from(audio), length)
            .file_name(format!("audio.{}", format.as_str()))
            .mime_str(format.media_type());
        let file = match file {
            Ok(file) => file,
            Err(e) => return Attempt::Done(Err(SpeechError::Config(chain(&e)))),
        };
        let mut form = Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", "json");
        if let Some(language) = language {
            form = form.text("language", language.to_owned());
        }
        let mut request = self.client.post(self.endpoint.clone()).multipart(form);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = match timeout_at(deadline, request.send()).await {
            Err(_) => return Attempt::Done(Err(self.timeout())),
            // A transcription has no side effects: any failure to get an answer is worth
            // another try (refused connection, reset, stale pooled connection).
            Ok(Err(e)) => {
                return Attempt::Retry {
                    error: SpeechError::Transport(chain(&e)),
                    retry_after: None,
                };
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done(self.read_answer(response, deadline).await);
        }
        let server_delay = retry_after(response.headers());
        // Never cancelled: dropping the whole future is how a caller stops.
        let message = read_error_message(response, deadline, &CancellationToken::new())
            .await
            .unwrap_or_default();
        match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
                error: SpeechError::Busy(format!("HTTP {status}: {message}")),
                retry_after: server_delay,
            },
            _ => Attempt::Done(Err(SpeechError::Rejected {
                status: status.as_u16(),
                message,
            })),
        }
    }

    /// Reads a successful answer (at most [`ANSWER_LIMIT`] bytes) and takes its `text`.
    async fn read_answer(
        &self,
        mut response: reqwest::Response,
        deadline: Instant,
    ) -> Result<String, SpeechError> {
        let mut body = Vec::new();
        loop {
            match timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(self.timeout()),
                Ok(Err(e)) => return Err(SpeechError::Transport(chain(&e))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > ANSWER_LIMIT {
                        return Err(SpeechError::Protocol(format!(
                            "the answer is larger than {ANSWER_LIMIT} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        // serde_json's message gives a position, never the text itself.
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            SpeechError::Protocol(format!("expected JSON with a `text` field: {e}"))
        })?;
        Ok(answer.text)
    }

    /// The error for an attempt that ran out of time.
    fn timeout(&self) -> SpeechError {
        SpeechError::Timeout(self.config.request_timeout)
    }
}

/// How one request went.
enum Attempt {
    /// Finished, well or for good.
    Done(Result<String, SpeechError>),
    /// Failed in a way worth another try; `retry_after` is the server's requested delay.
    Retry {
        /// The error to report if no retry is left.
        error: SpeechError,
        /// From `retry-after-ms` or `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
}

/// The `json` response format: `{"text": "..."}` (other fields are ignored).
#[derive(Deserialize)]
struct Answer {
    /// The transcript.
    text: String,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};

    use super::*;

    /// A minimal PCM WAV: `seconds` of silence at 16 kHz mono 16-bit, with an extra chunk
    /// before `data` as many recorders write.
    fn wav(seconds: u32, declared_data: Option<u32>) -> Vec<u8> {
        let rate = 16_000u32;
        let data = vec![0u8; (rate * 2 * seconds) as usize];
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"abc\0"); // 3 bytes and its pad byte
        out.extend_from_slice(b"data");
        let declared = declared_data.unwrap_or(u32::try_from(data.len()).expect("small"));
        out.extend_from_slice(&declared.to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn wav_duration_comes_from_the_byte_rate_and_the_data_present() {
        assert_eq!(wav_duration(&wav(3, None)), Some(Duration::from_secs(3)));
        // Streaming recorders declare "unknown" (0xFFFFFFFF): the bytes present count.
        assert_eq!(
            wav_duration(&wav(2, Some(u32::MAX))),
            Some(Duration::from_secs(2))
        );
        // A header that claims more than was sent is not believed either.
        assert_eq!(
            wav_duration(&wav(1, Some(1_000_000_000))),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn malformed_wav_headers_have_no_duration() {
        let good = wav(1, None);
        assert_eq!(wav_duration(&good[..20]), None, "cut inside fmt");
        assert_eq!(wav_duration(b"RIFF\0\0\0\0WAVE"), None, "no chunks");
        let mut zero_rate = good.clone();
        zero_rate[28..32].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(wav_duration(&zero_rate), None, "byte rate 0");
        let mut huge_chunk = good.clone();
        huge_chunk[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_duration(&huge_chunk), None, "fmt chunk past the end");
        assert_eq!(wav_duration(b"RIFX\0\0\0\0WAVEfmt "), None, "not RIFF");
    }

    /// One Ogg page of stream `serial` holding `packet`, with `granule`.
    fn ogg_page(serial: u32, granule: u64, packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&[0; 8]); // sequence number, checksum (not checked)
        let mut lacing = vec![255u8; packet.len() / 255];
        lacing.push(u8::try_from(packet.len() % 255).expect("< 255"));
        page.push(u8::try_from(lacing.len()).expect("short packet"));
        page.extend_from_slice(&lacing);
        page.extend_from_slice(packet);
        page
    }

    #[test]
    fn ogg_duration_is_the_last_granule_of_the_first_stream() {
        // Opus: 48 kHz granules less the pre-skip (312 samples).
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&16_000u32.to_le_bytes());
        let mut opus = ogg_page(7, 0, &head);
        opus.extend(ogg_page(7, 0, b"OpusTags"));
        opus.extend(ogg_page(7, 48_000 + 312, &[0; 300]));
        opus.extend(ogg_page(7, u64::MAX, &[0; 10])); // no packet ends here
        opus.extend(ogg_page(9, 10 * 48_000, &[0; 10])); // another stream
        opus.extend(ogg_page(7, 3 * 48_000 + 312, &[0; 10]));
        assert_eq!(
            duration(AudioFormat::Ogg, &opus),
            Some(Duration::from_secs(3))
        );
        // Vorbis: granules at the sample rate of its identification header.
        let mut head = b"\x01vorbis\0\0\0\0\x01".to_vec();
        head.extend_from_slice(&22_050u32.to_le_bytes());
        let mut vorbis = ogg_page(1, 0, &head);
        vorbis.extend(ogg_page(1, 2 * 22_050, &[0; 40]));
        assert_eq!(
            duration(AudioFormat::Ogg, &vorbis),
            Some(Duration::from_secs(2))
        );
        // An unknown codec, or a page cut short, cannot be measured.
        assert_eq!(
            duration(AudioFormat::Ogg, &ogg_page(1, 0, b"Speex   ")),
            None
        );
        assert_eq!(duration(AudioFormat::Ogg, &opus[..40]), None);
    }

    #[test]
    fn mp3_duration_counts_the_frames() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes of 1152 samples.
        let mut frame = vec![0xFF, 0xFB, 0x90, 0x64];
        frame.resize(417, 0);
        let mut mp3 = b"ID3\x04\0\0\0\0\0\x05hello".to_vec();
        for _ in 0..100 {
            mp3.extend_from_slice(&frame);
        }
        mp3.extend_from_slice(b"TAG trailing ID3v1 tag");
        let seconds = duration(AudioFormat::Mp3, &mp3)
            .expect("frames")
            .as_secs_f64();
        assert!(
            (seconds - 100.0 * 1152.0 / 44_100.0).abs() < 1e-6,
            "{seconds}"
        );
        // MPEG-2 (24 kHz half-rate family): 576 samples at 22.05 kHz, 8 kbit/s: 26 bytes.
        let mut frame = vec![0xFF, 0xF3, 0x10, 0x64];
        frame.resize(26, 0);
        let seconds = duration(AudioFormat::Mp3, &frame.repeat(10))
            .expect("frames")
            .as_secs_f64();
        assert!(
            (seconds - 10.0 * 576.0 / 22_050.0).abs() < 1e-6,
            "{seconds}"
        );
        assert_eq!(duration(AudioFormat::Mp3, b"ID3\x04\0\0\0\0\0\0"), None);
    }

    #[test]
    fn webm_duration_is_declared_or_the_last_block() {
        // As MediaRecorder writes it: segment and clusters of unknown size, no duration,
        // timecode scale 1 ms; the last block starts at 2000 + 1500 ms.
        let header = b"\x1a\x45\xdf\xa3\x84\x42\x82\x81\x01".to_vec();
        let mut recorded = header.clone();
        recorded.extend_from_slice(b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff");
        recorded.extend_from_slice(b"\x15\x49\xa9\x66\x87\x2a\xd7\xb1\x83\x0f\x42\x40");
        recorded.extend_from_slice(b"\x16\x54\xae\x6b\x82\xae\x80"); // tracks, skipped
        for (cluster_ms, block_ms) in [(0u16, [0u16, 20]), (2000, [0, 1500])] {
            recorded.extend_from_slice(b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff");
            recorded.extend_from_slice(b"\xe7\x82");
            recorded.extend_from_slice(&cluster_ms.to_be_bytes());
            for block in block_ms {
                recorded.extend_from_slice(b"\xa3\x86\x81");
                recorded.extend_from_slice(&block.to_be_bytes());
                recorded.extend_from_slice(b"\x80\xfc\x00");
            }
        }
        assert_eq!(
            duration(AudioFormat::Webm, &recorded),
            Some(Duration::from_millis(3500))
        );
        // A declared duration (a float, in timecode-scale units) wins.
        let mut declared = header;
        declared.extend_from_slice(b"\x18\x53\x80\x67\x90\x15\x49\xa9\x66\x8b");
        declared.extend_from_slice(b"\x44\x89\x88");
        declared.extend_from_slice(&4250.0f64.to_be_bytes());
        assert_eq!(
            duration(AudioFormat::Webm, &declared),
            Some(Duration::from_millis(4250))
        );
        assert_eq!(
            duration(AudioFormat::Webm, &declared[..9]),
            None,
            "no blocks"
        );
    }

    #[test]
    fn formats_are_recognised_by_their_magic_bytes() {
        assert_eq!(AudioFormat::sniff(&wav(1, None)), Some(AudioFormat::Wav));
        assert_eq!(
            AudioFormat::sniff(b"OggS\0\x02\0\0\0\0\0\0\0\0"),
            Some(AudioFormat::Ogg)
        );
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04";
        assert_eq!(AudioFormat::sniff(webm), Some(AudioFormat::Webm));
        let matroska = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska";
        assert_eq!(AudioFormat::sniff(matroska), None, "Matroska is not WebM");
        assert_eq!(
            AudioFormat::sniff(b"ID3\x04\0\0\0\0\0\0"),
            Some(AudioFormat::Mp3)
        );
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz.
        assert_eq!(
            AudioFormat::sniff(&[0xFF, 0xFB, 0x90, 0x64]),
            Some(AudioFormat::Mp3)
        );
        // AAC in ADTS (layer 0) and a reserved bitrate are not MP3.
        assert_eq!(AudioFormat::sniff(&[0xFF, 0xF1, 0x50, 0x80]), None);
        assert_eq!(AudioFormat::sniff(&[0xFF, 0xFB, 0xF0, 0x64]), None);
        for other in [
            &b"%PDF-1.7"[..],
            b"PK\x03\x04",
            b"fLaC\0\0\0\x22",
            b"RIFF\0\0\0\0AVI ",
            b"",
            b"\xff",
        ] {
            assert_eq!(AudioFormat::sniff(other), None, "{other:?}");
        }
    }

    /// What the scripted server saw of each request: headers and raw body.
    type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

    /// A server whose `POST /v1/audio/transcriptions` answers `respond(n)` to the n-th
    /// request (0-based); returns the base URL and what it saw.
    async fn serve<F>(respond: F) -> (String, Seen)
    where
        F: Fn(usize) -> Response + Clone + Send + Sync + 'static,
    {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = Router::new().route(
            "/v1/audio/transcriptions",
            post(move |headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                let respond = respond.clone();
                async move {
                    let n = {
                        let mut seen = record.lock().expect("lock");
                        seen.push((headers, body.to_vec()));
                        seen.len() - 1
                    };
                    respond(n)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/v1"), seen)
    }

    fn client(base_url: &str) -> SpeechClient {
        let mut config = SpeechConfig::new(base_url, "whisper-test");
        config.initial_backoff = Duration::from_millis(1);
        config.max_backoff = Duration::from_millis(5);
        SpeechClient::new(config).expect("client")
    }

    fn text(text: &str) -> Response {
        Json(serde_json::json!({ "text": text })).into_response()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    #[tokio::test]
    async fn sends_the_audio_named_by_its_format_with_model_language_and_key() {
        let (base_url, seen) = serve(|_| text(" Hello there.")).await;
        let mut config = SpeechConfig::new(base_url, "whisper-test");
        config.api_key = Some("sk-test".into());
        let speech = SpeechClient::new(config).expect("client");
        let audio = Bytes::from_static(b"\x1a\x45\xdf\xa3 pretend webm");
        let transcript = speech
            .transcribe(audio, AudioFormat::Webm, Some("en"))
            .await
            .expect("transcript");
        assert_eq!(transcript, " Hello there.");

        let seen = seen.lock().expect("lock");
        let (headers, body) = &seen[0];
        assert_eq!(headers[AUTHORIZATION], "Bearer sk-test");
        assert!(
            headers.contains_key(CONTENT_LENGTH),
            "sent chunked: {headers:?}"
        );
        for part in [
            "name=\"file\"; filename=\"audio.webm\"",
            "Content-Type: audio/webm",
            "pretend webm",
            "name=\"model\"\r\n\r\nwhisper-test",
            "name=\"response_format\"\r\n\r\njson",
            "name=\"language\"\r\n\r\nen",
        ] {
            assert!(contains(body, part), "{part:?} missing from the form");
        }
    }

    #[tokio::test]
    async fn busy_answers_are_retried_and_other_errors_are_not() {
        let (base_url, seen) = serve(|n| match n {
            0 => (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response(),
            _ => text("after a retry"),
        })
        .await;
        let transcript = client(&base_url)
            .transcribe(Bytes::from_static(b"RIFF"), AudioFormat::Wav, None)
            .await
            .expect("transcript");
        assert_eq!(transcript, "after a retry");
        assert_eq!(seen.lock().expect("lock").len(), 2);

        // A server that crashed on this recording would crash on it again.
        let (base_url, seen) =
            serve(|_| (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response())
                .await;
        let error = client(&base_url)
            .transcribe(Bytes::from_static(b"RIFF"), AudioFormat::Wav, None)
            .await
            .expect_err("500");
        assert!(
            matches!(error, SpeechError::Rejected { status: 500, .. }),
            "{error:?}"
        );
        assert_eq!(seen.lock().expect("lock").len(), 1);

        let (base_url, _) = serve(|_| {
            let body = serde_json::json!({"error": {"message": "Invalid file format."}});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        })
        .await;
        let error = client(&base_url)
            .transcribe(Bytes::from_static(b"OggS"), AudioFormat::Ogg, None)
            .await
            .expect_err("400");
        match error {
            SpeechError::Rejected { status, message } => {
                assert_eq!((status, message.as_str()), (400, "Invalid file format."));
            }
            other => panic!("{other:?}"),
        }

        // Busy on every attempt: the first try and `max_retries` more, then the error.
        let (base_url, seen) =
            serve(|_| (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response()).await;
        let error = client(&base_url)
            .transcribe(Bytes::from_static(b"OggS"), AudioFormat::Ogg, None)
            .await
            .expect_err("429");
        assert!(matches!(error, SpeechError::Busy(_)), "{error:?}");
        assert_eq!(seen.lock().expect("lock").len(), 3);
    }

    #[tokio::test]
    async fn an_answer_without_text_is_a_protocol_error() {
        let (base_url, _) = serve(|_| (StatusCode::OK, "<html>hello</html>").into_response()).await;
        let error = client(&base_url)
            .transcribe(Bytes::from_static(b"OggS"), AudioFormat::Ogg, None)
            .await
            .expect_err("not JSON");
        assert!(matches!(error, SpeechError::Protocol(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transport_error() {
        // A port nobody listens on: bound, then released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = client(&format!("http://{address}/v1"))
            .transcribe(Bytes::from_static(b"OggS"), AudioFormat::Ogg, None)
            .await
            .expect_err("refused");
        assert!(matches!(error, SpeechError::Transport(_)), "{error:?}");
    }

    #[test]
    fn only_http_and_https_base_urls_are_accepted() {
        let error =
            SpeechClient::new(SpeechConfig::new("ftp://example.test/v1", "m")).expect_err("ftp");
        assert!(error.to_string().contains("http or https"), "{error}");
        assert!(SpeechClient::new(SpeechConfig::new("not a url", "m")).is_err());
    }

    #[test]
    fn the_api_key_is_not_in_debug_output() {
        let mut config = SpeechConfig::new("http://127.0.0.1:1/v1", "whisper-1");
        config.api_key = Some("sk-very-secret".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
