//! The handshake: the first frame each way, whose layout never changes.

use super::*;

/// What the server said of itself at the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's protocol minor version: requests newer than it must not be sent.
    pub minor: u16,
    pub access: Access,
    pub store_id: String,
    pub agent: String,
}

pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    agent: &str,
) -> Result<ServerInfo, ProtoError> {
    conn.send(&Hello {
        magic: MAGIC,
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        agent: agent.to_string(),
    })
    .await?;
    conn.flush().await?;
    match conn.recv::<HelloReply>().await? {
        HelloReply::Welcome {
            major,
            minor,
            access,
            store_id,
            agent,
        } if major == PROTOCOL_MAJOR => Ok(ServerInfo {
            minor,
            access,
            store_id,
            agent,
        }),
        HelloReply::Welcome { major, minor, .. } => Err(ProtoError::Handshake(format!(
            "client speaks protocol {PROTOCOL_MAJOR}.x, server speaks {major}.{minor}; upgrade the older side"
        ))),
        HelloReply::Refused { message } => Err(ProtoError::Handshake(message)),
    }
}

/// The server side of the handshake: reads `Hello`, answers, and returns it when accepted.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    agent: &str,
    access: Access,
    store_id: &str,
) -> Result<Hello, ProtoError> {
    let hello: Hello = conn.recv().await?;
    if hello.magic != MAGIC {
        let message = "not a hoover client (bad magic in the first frame)".to_string();
        conn.send(&HelloReply::Refused {
            message: message.clone(),
        })
        .await?;
        conn.flush().await?;
        return Err(ProtoError::Handshake(message));
    }
    if hello.major != PROTOCOL_MAJOR {
        let (older, fix) = if hello.major > PROTOCOL_MAJOR {
            ("server", "upgrade the server")
        } else {
            ("client", "upgrade the client")
        };
        let message = format!(
            "client speaks protocol {}.x, server speaks {PROTOCOL_MAJOR}.x; the {older} is older: {fix}",
            hello.major
        );
        conn.send(&HelloReply::Refused {
            message: message.clone(),
        })
        .await?;
        conn.flush().await?;
        return Err(ProtoError::Handshake(message));
    }
    conn.send(&HelloReply::Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        agent: agent.to_string(),
        access,
        store_id: store_id.to_string(),
    })
    .await?;
    conn.flush().await?;
    Ok(hello)
}
