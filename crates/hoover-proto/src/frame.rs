//! Frames: a 4-byte big-endian length, then a postcard-encoded message; [`Conn`] sends and
//! receives them over any byte stream.

use super::*;

/// Reads one frame's payload. Refuses an oversize length before reading on, and allocates as
/// the bytes arrive, so a peer that announces a large frame and stalls holds little memory.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ProtoError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProtoError::Closed),
        Err(e) => return Err(e.into()),
    }
    read_payload(r, u32::from_be_bytes(len) as u64).await
}

/// Reads a payload of `len` bytes whose length prefix has been read.
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, len: u64) -> Result<Vec<u8>, ProtoError> {
    if len > MAX_FRAME as u64 {
        return Err(ProtoError::FrameTooLarge(len));
    }
    let mut buf = Vec::with_capacity((len as usize).min(READ_STEP));
    let got = (&mut *r).take(len).read_to_end(&mut buf).await?;
    if (got as u64) < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the frame ended after {got} of its {len} bytes"),
        )
        .into());
    }
    Ok(buf)
}

/// How much of a frame is allocated ahead of its bytes arriving.
const READ_STEP: usize = 64 * 1024;

/// Encodes a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let body = postcard::to_extend(msg, Vec::new()).expect("postcard encoding into a Vec");
    out.extend_from_slice(&body);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame's payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    postcard::from_bytes(payload).map_err(|e| ProtoError::Decode(e.to_string()))
}

/// A framed connection over any byte stream, counting bytes each way.
pub struct Conn<S> {
    stream: S,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        let frame = encode(msg);
        if frame.len() - 4 > MAX_FRAME {
            return Err(ProtoError::FrameTooLarge(frame.len() as u64 - 4));
        }
        self.stream.write_all(&frame).await?;
        self.bytes_sent += frame.len() as u64;
        Ok(())
    }

    /// Sends raw bytes as they are (tests use it to send broken frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ProtoError> {
        self.stream.write_all(bytes).await?;
        self.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ProtoError> {
        self.stream.flush().await?;
        Ok(())
    }

    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ProtoError> {
        let payload = read_frame(&mut self.stream).await?;
        self.bytes_received += payload.len() as u64 + 4;
        decode(&payload)
    }

    /// Receives one message with deadlines: its first byte must come within `wait` (`None`:
    /// wait as long as it takes, as for an idle agent), and the rest of the frame within
    /// `stall` of that first byte. A peer that misses either gets [`ProtoError::TimedOut`].
    pub async fn recv_within<T: DeserializeOwned>(
        &mut self,
        wait: Option<Duration>,
        stall: Duration,
    ) -> Result<T, ProtoError> {
        let mut first = [0u8; 1];
        let read = self.stream.read(&mut first);
        let n = match wait {
            None => read.await?,
            Some(w) => tokio::time::timeout(w, read).await.map_err(|_| {
                ProtoError::TimedOut(format!("the peer sent nothing for {} s", w.as_secs()))
            })??,
        };
        if n == 0 {
            return Err(ProtoError::Closed);
        }
        let stream = &mut self.stream;
        let rest = async move {
            let mut more = [0u8; 3];
            stream.read_exact(&mut more).await?;
            let len = u32::from_be_bytes([first[0], more[0], more[1], more[2]]) as u64;
            read_payload(stream, len).await
        };
        let payload = tokio::time::timeout(stall, rest).await.map_err(|_| {
            ProtoError::TimedOut(format!(
                "a frame was begun but not finished within {} s",
                stall.as_secs()
            ))
        })??;
        self.bytes_received += payload.len() as u64 + 4;
        decode(&payload)
    }

    /// Sends one message and flushes it, giving up after `stall` (a peer that does not read).
    pub async fn send_within<T: Serialize>(
        &mut self,
        msg: &T,
        stall: Duration,
    ) -> Result<(), ProtoError> {
        let send = async {
            self.send(msg).await?;
            self.flush().await
        };
        tokio::time::timeout(stall, send).await.map_err(|_| {
            ProtoError::TimedOut(format!(
                "the peer read nothing of a reply for {} s",
                stall.as_secs()
            ))
        })?
    }

    pub async fn shutdown(&mut self) -> Result<(), ProtoError> {
        self.stream.shutdown().await?;
        Ok(())
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}
