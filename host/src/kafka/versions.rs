//! Which Kafka APIs and versions Rill serves, in one table, and the ApiVersions answer built
//! from it. Every version advertised here is handled by `connection::dispatch`.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

use super::frame;

/// `(api, lowest, highest)` version served. Where Rill's range ends below the crate's, the reason
/// is in the comment.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    // v0–v2 are advertised only because librdkafka refuses compressed produce unless v0 is
    // (KAFKA-18659); they are answered with UNSUPPORTED_VERSION. v13 names topics by id.
    (ApiKey::Produce, 0, 12),
    // v13+ names topics by id.
    (ApiKey::Fetch, 4, 12),
    // v7 adds MAX_TIMESTAMP (-3) and v8+ tiered-storage specs that Rill does not answer yet.
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    // v10 names topics by id.
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
];

/// Produce versions that are advertised but answered with `UNSUPPORTED_VERSION`.
pub const PRODUCE_UNSUPPORTED_BELOW: i16 = 3;

/// The served range of `key`, if it is served.
pub fn served(key: ApiKey) -> Option<(i16, i16)> {
    SERVED.iter().find(|(served, _, _)| *served == key).map(|&(_, min, max)| (min, max))
}

/// Whether `version` of `key` is served.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    served(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions response: every served API with its range.
pub fn api_versions() -> ApiVersionsResponse {
    let api_keys = SERVED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys).with_finalized_features_epoch(-1)
}

/// KIP-511: a client that asks ApiVersions in a version newer than the broker's gets a v0
/// response with `UNSUPPORTED_VERSION` and the broker's ranges, and retries with one it knows.
pub fn unsupported_api_versions(correlation_id: i32) -> Result<bytes::BytesMut, String> {
    let response = api_versions().with_error_code(kafka_protocol::ResponseError::UnsupportedVersion.code());
    frame::encode_response(correlation_id, 0, 0, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_is_one_the_codec_can_encode() {
        for &(key, min, max) in SERVED {
            let codec = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(max <= codec.max, "{key:?} v{max} is beyond kafka-protocol's v{}", codec.max);
            if key != ApiKey::Produce {
                assert!(min >= codec.min, "{key:?} v{min} is below kafka-protocol's v{}", codec.min);
            }
        }
        // librdkafka needs Produce v0 in the advertised range (KAFKA-18659).
        assert_eq!(served(ApiKey::Produce).map(|(min, _)| min), Some(0));
        assert!(PRODUCE_UNSUPPORTED_BELOW <= ApiKey::Produce.valid_versions().min);
    }

    #[test]
    fn api_versions_lists_every_served_api() {
        let response = api_versions();
        assert_eq!(response.api_keys.len(), SERVED.len());
        assert!(is_served(ApiKey::Fetch, 12) && !is_served(ApiKey::Fetch, 13) && !is_served(ApiKey::SaslHandshake, 0));
    }
}
