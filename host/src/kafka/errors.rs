//! The error codes a response carries, wherever the API puts them (top level, per topic, per
//! partition, per member), so `/metrics` counts every error a client was told about.

use kafka_protocol::messages::{
    ApiVersionsResponse, CreatePartitionsResponse, CreateTopicsResponse, DeleteGroupsResponse, DeleteRecordsResponse,
    DeleteTopicsResponse, DescribeClusterResponse, DescribeConfigsResponse, DescribeGroupsResponse, FetchResponse,
    FindCoordinatorResponse, HeartbeatResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse,
    JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse, ListOffsetsResponse, MetadataResponse,
    OffsetCommitResponse, OffsetFetchResponse, ProduceResponse, SyncGroupResponse,
};

/// A response's error codes, zeros included (the caller skips them).
pub trait ErrorCodes {
    fn error_codes(&self) -> Vec<i16>;
}

macro_rules! top_level {
    ($($response:ty),* $(,)?) => {
        $(impl ErrorCodes for $response {
            fn error_codes(&self) -> Vec<i16> {
                vec![self.error_code]
            }
        })*
    };
}

top_level!(
    ApiVersionsResponse,
    DescribeClusterResponse,
    InitProducerIdResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
);

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect()
    }
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self) -> Vec<i16> {
        let partitions = self.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code));
        std::iter::once(self.error_code).chain(partitions).collect()
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self) -> Vec<i16> {
        let topics = self.topics.iter().map(|t| t.error_code);
        std::iter::once(self.error_code).chain(topics).collect()
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics.iter().map(|t| t.error_code).collect()
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.responses.iter().map(|t| t.error_code).collect()
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.results.iter().map(|t| t.error_code).collect()
    }
}

impl ErrorCodes for DeleteRecordsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.results.iter().map(|r| r.error_code).collect()
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.responses.iter().map(|r| r.error_code).collect()
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code).chain(self.coordinators.iter().map(|c| c.error_code)).collect()
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code).chain(self.members.iter().map(|m| m.error_code)).collect()
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self) -> Vec<i16> {
        let v1_to_7 = self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code));
        let v8_on = self.groups.iter().flat_map(|g| {
            std::iter::once(g.error_code).chain(g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        });
        std::iter::once(self.error_code).chain(v1_to_7).chain(v8_on).collect()
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.groups.iter().map(|g| g.error_code).collect()
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.results.iter().map(|r| r.error_code).collect()
    }
}
