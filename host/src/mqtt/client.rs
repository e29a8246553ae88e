//! One face over rumqttc's two clients, MQTT 3.1.1 and MQTT 5, so the bridge is written once.
//! Only what the bridge uses: connect with a persistent session and manual acknowledgements,
//! subscribe, receive, acknowledge, disconnect.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, SubscribeReasonCode};
use rumqttc::{
    ConnectReturnCode, SubscribeFilter, SubscribeReasonCode as SubscribeReturnCode, TlsConfiguration, Transport,
};

use super::spec::{BridgeSpec, MqttVersion};
use crate::limits::MQTT_INFLIGHT_MAX;

/// The client side of a connection: subscribe, acknowledge, disconnect.
#[derive(Clone)]
pub(super) enum Client {
    V3(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop to poll.
pub(super) enum Connection {
    V3(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A message as the MQTT broker delivered it.
#[derive(Debug, Clone)]
pub(super) enum Received {
    V3(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

/// What happened on the connection, as far as the bridge cares.
pub(super) enum Happened {
    /// A CONNACK accepting the connection.
    Connected {
        session_present: bool,
    },
    Message(Received),
    /// A SUBACK: the filters the broker refused (their index in the SUBSCRIBE), with why.
    Subscribed {
        refused: Vec<(usize, String)>,
    },
    /// An outgoing DISCONNECT left.
    DisconnectSent,
    Other,
}

/// Builds the client for `spec`: a persistent session (clean session off; with MQTT 5 a session
/// expiry interval), manual acknowledgements, bounded packets.
pub(super) fn connect(
    spec: &BridgeSpec,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Client, Connection), String> {
    let transport = || match &tls {
        Some(config) => Transport::tls_with_config(TlsConfiguration::Rustls(Arc::clone(config))),
        None => Transport::Tcp,
    };
    // Room for every acknowledgement of a full window, so the worker never waits on it.
    let requests = MQTT_INFLIGHT_MAX * 2 + 64;
    // A PUBLISH is its payload plus a topic and a few header bytes.
    let max_packet = spec.max_message_bytes + 64 * 1024;
    let keep_alive = Duration::from_secs(spec.keep_alive_s);
    match spec.version().map_err(|e| e.to_string())? {
        MqttVersion::V311 => {
            let mut options = rumqttc::MqttOptions::new(spec.client_id(), host, port);
            options
                .set_keep_alive(keep_alive)
                .set_transport(transport())
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_max_packet_size(max_packet, 64 * 1024);
            if let Some(username) = &spec.username {
                options.set_credentials(username, spec.password.clone().unwrap_or_default());
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(options, requests);
            Ok((Client::V3(client), Connection::V3(Box::new(eventloop))))
        }
        MqttVersion::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(spec.client_id(), host, port);
            options
                .set_keep_alive(keep_alive)
                .set_transport(transport())
                .set_clean_start(false)
                .set_session_expiry_interval(Some(spec.session_expiry_s()))
                // The broker sends at most this many unacknowledged QoS 1 messages: the bound on
                // what the bridge holds, said to the broker itself.
                .set_receive_maximum(Some(MQTT_INFLIGHT_MAX.min(usize::from(u16::MAX)) as u16))
                // The broker does not send what is larger (MQTT 5 §3.1.2.11.4), instead of the
                // connection failing on it.
                .set_max_packet_size(Some(max_packet.min(u32::MAX as usize) as u32))
                .set_manual_acks(true);
            if let Some(username) = &spec.username {
                options.set_credentials(username, spec.password.clone().unwrap_or_default());
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, requests);
            Ok((Client::V5(client), Connection::V5(Box::new(eventloop))))
        }
    }
}

/// Why the connection broke.
pub(super) struct Broken {
    pub message: String,
    /// An incoming message exceeded the bridge's `max_message_bytes`.
    pub too_large: bool,
}

impl Broken {
    /// Says what to do about a message too large for the bridge: MQTT 3.1.1 cannot refuse one,
    /// so the connection breaks on it each time the MQTT broker sends it again.
    pub(super) fn explain(self, spec: &BridgeSpec) -> String {
        if !self.too_large {
            return self.message;
        }
        format!(
            "{}: a message larger than max_message_bytes ({}) waits at the MQTT broker; it stays there (nothing \
             is lost) until max_message_bytes is raised or the message is removed at the broker",
            self.message, spec.max_message_bytes
        )
    }
}

fn broken_v3(error: rumqttc::ConnectionError) -> Broken {
    use rumqttc::mqttbytes::Error;
    use rumqttc::{ConnectionError, StateError};
    let too_large =
        matches!(error, ConnectionError::MqttState(StateError::Deserialization(Error::PayloadSizeLimitExceeded(_))));
    Broken { message: error.to_string(), too_large }
}

fn broken_v5(error: rumqttc::v5::ConnectionError) -> Broken {
    use rumqttc::v5::mqttbytes::Error;
    use rumqttc::v5::{ConnectionError, StateError};
    let too_large = matches!(
        error,
        ConnectionError::MqttState(StateError::Deserialization(Error::PayloadSizeLimitExceeded { .. }))
    );
    Broken { message: error.to_string(), too_large }
}

/// The filters a SUBACK refused (their index in the SUBSCRIBE), with why.
fn refused<C: std::fmt::Debug>(codes: &[C], granted: impl Fn(&C) -> bool) -> Vec<(usize, String)> {
    codes.iter().enumerate().filter(|(_, code)| !granted(code)).map(|(i, code)| (i, format!("{code:?}"))).collect()
}

impl Client {
    pub(super) fn try_subscribe(&self, filters: &[(String, u8)]) -> Result<(), String> {
        match self {
            Client::V3(client) => client
                .try_subscribe_many(filters.iter().map(|(f, q)| SubscribeFilter::new(f.clone(), qos_v3(*q))))
                .map_err(|e| e.to_string()),
            Client::V5(client) => client
                .try_subscribe_many(filters.iter().map(|(f, q)| Filter::new(f.clone(), qos_v5(*q))))
                .map_err(|e| e.to_string()),
        }
    }

    pub(super) fn try_unsubscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V3(client) => client.try_unsubscribe(filter).map_err(|e| e.to_string()),
            Client::V5(client) => client.try_unsubscribe(filter).map_err(|e| e.to_string()),
        }
    }

    /// Acknowledges `message`; waits for room in the request queue. An error means the event
    /// loop is gone.
    pub(super) async fn ack(&self, message: &Received) -> Result<(), String> {
        match (self, message) {
            (Client::V3(client), Received::V3(publish)) => client.ack(publish).await.map_err(|e| e.to_string()),
            (Client::V5(client), Received::V5(publish)) => client.ack(publish).await.map_err(|e| e.to_string()),
            _ => Err("a message acknowledged on a client of another MQTT version".into()),
        }
    }

    pub(super) fn try_disconnect(&self) {
        let _ = match self {
            Client::V3(client) => client.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(client) => client.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

impl Connection {
    /// The next event; an error means the connection broke (polling again reconnects).
    pub(super) async fn poll(&mut self) -> Result<Happened, Broken> {
        match self {
            Connection::V3(eventloop) => {
                use rumqttc::{Event, Outgoing, Packet};
                Ok(match eventloop.poll().await.map_err(broken_v3)? {
                    Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                        Happened::Connected { session_present: ack.session_present }
                    }
                    Event::Incoming(Packet::Publish(publish)) => Happened::Message(Received::V3(publish)),
                    Event::Incoming(Packet::SubAck(ack)) => Happened::Subscribed {
                        refused: refused(&ack.return_codes, |code| !matches!(code, SubscribeReturnCode::Failure)),
                    },
                    Event::Outgoing(Outgoing::Disconnect) => Happened::DisconnectSent,
                    _ => Happened::Other,
                })
            }
            Connection::V5(eventloop) => {
                use rumqttc::Outgoing;
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
                Ok(match eventloop.poll().await.map_err(broken_v5)? {
                    Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                        Happened::Connected { session_present: ack.session_present }
                    }
                    Event::Incoming(Packet::Publish(publish)) => Happened::Message(Received::V5(publish)),
                    Event::Incoming(Packet::SubAck(ack)) => Happened::Subscribed {
                        refused: refused(&ack.return_codes, |code| matches!(code, SubscribeReasonCode::Success(_))),
                    },
                    Event::Outgoing(Outgoing::Disconnect) => Happened::DisconnectSent,
                    _ => Happened::Other,
                })
            }
        }
    }
}

impl Received {
    /// The MQTT topic (not valid UTF-8 cannot happen: rumqttc checks; shown lossily anyway).
    pub(super) fn topic(&self) -> String {
        match self {
            Received::V3(publish) => publish.topic.clone(),
            Received::V5(publish) => String::from_utf8_lossy(&publish.topic).into_owned(),
        }
    }

    pub(super) fn payload(&self) -> &[u8] {
        match self {
            Received::V3(publish) => &publish.payload,
            Received::V5(publish) => &publish.payload,
        }
    }

    /// The payload, sharing the buffer it was read into.
    pub(super) fn payload_bytes(&self) -> bytes::Bytes {
        match self {
            Received::V3(publish) => publish.payload.clone(),
            Received::V5(publish) => publish.payload.clone(),
        }
    }

    pub(super) fn qos(&self) -> u8 {
        match self {
            Received::V3(publish) => publish.qos as u8,
            Received::V5(publish) => publish.qos as u8,
        }
    }

    pub(super) fn retained(&self) -> bool {
        match self {
            Received::V3(publish) => publish.retain,
            Received::V5(publish) => publish.retain,
        }
    }

    /// Set on a redelivery: the broker sent this message before without an acknowledgement.
    pub(super) fn redelivered(&self) -> bool {
        match self {
            Received::V3(publish) => publish.dup,
            Received::V5(publish) => publish.dup,
        }
    }

    /// MQTT 5 user properties, in order (none in MQTT 3.1.1).
    pub(super) fn user_properties(&self) -> &[(String, String)] {
        match self {
            Received::V3(_) => &[],
            Received::V5(publish) => publish.properties.as_ref().map_or(&[], |p| p.user_properties.as_slice()),
        }
    }
}

fn qos_v3(level: u8) -> rumqttc::QoS {
    match level {
        0 => rumqttc::QoS::AtMostOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn qos_v5(level: u8) -> rumqttc::v5::mqttbytes::QoS {
    match level {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        _ => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}
