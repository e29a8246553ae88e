//! `rill group list|describe|reset-offsets|delete`.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::GroupId;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::protocol::StrBytes;

use super::lookup::{Missing, offsets_at, partitions, topic_name};
use super::{GroupCommand, StartAt};
use crate::client::{Client, ClientError, check};

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

pub async fn run(client: &mut Client, command: GroupCommand) -> Result<(), ClientError> {
    match command {
        GroupCommand::List => list(client).await,
        GroupCommand::Describe { group } => describe(client, &group).await,
        GroupCommand::ResetOffsets { group, topic, partition, to } => {
            reset_offsets(client, &group, &topic, partition, to).await
        }
        GroupCommand::Delete { group } => delete(client, &group).await,
    }
}

async fn list(client: &mut Client) -> Result<(), ClientError> {
    let version = client.version::<ListGroupsRequest>(4)?;
    let response = client.send(&ListGroupsRequest::default(), version).await?;
    check(response.error_code, || "listing groups".into(), None)?;
    for group in &response.groups {
        let state = if group.group_state.is_empty() { "-" } else { group.group_state.as_str() };
        println!("{}\t{state}\t{}", group.group_id.as_str(), group.protocol_type.as_str());
    }
    Ok(())
}

/// A consumer member's assignment (the consumer protocol's bytes), as "topic/partition" names.
fn assigned(bytes: Bytes) -> String {
    let size = bytes.len();
    match crate::kafka::groups::assigned_partitions(bytes) {
        Some(topics) => topics
            .iter()
            .flat_map(|(topic, partitions)| partitions.iter().map(move |p| format!("{topic}/{p}")))
            .collect::<Vec<_>>()
            .join(","),
        None if size < 2 => "-".into(),
        None => format!("({size} bytes, not the consumer protocol)"),
    }
}

async fn describe(client: &mut Client, group: &str) -> Result<(), ClientError> {
    let version = client.version::<DescribeGroupsRequest>(5)?;
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = client.send(&request, version).await?;
    let described =
        response.groups.first().ok_or_else(|| ClientError::Protocol("DescribeGroups answered nothing".into()))?;
    check(described.error_code, || format!("group {group}"), None)?;
    let committed = committed_offsets(client, group).await?;
    if described.group_state.as_str() == "Dead" && committed.is_empty() {
        return Err(ClientError::Refused(format!("group {group} does not exist")));
    }
    println!(
        "group {group}  state {}  protocol {} {}",
        described.group_state.as_str(),
        described.protocol_type.as_str(),
        described.protocol_data.as_str()
    );
    println!("members {}", described.members.len());
    for member in &described.members {
        let assignment = if described.protocol_type.as_str() == "consumer" {
            assigned(member.member_assignment.clone())
        } else {
            "-".into()
        };
        println!(
            "  {}  client {}  host {}  assigned {assignment}",
            member.member_id.as_str(),
            member.client_id.as_str(),
            member.client_host.as_str()
        );
    }
    println!("  {:<30}  {:>9}  {:>12}  {:>12}  {:>10}", "topic", "partition", "committed", "end", "lag");
    let mut by_topic: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
    for ((topic, partition), offset) in committed {
        by_topic.entry(topic).or_default().push((partition, offset));
    }
    for (topic, offsets) in by_topic {
        let asked: Vec<u32> = offsets.iter().map(|(p, _)| *p).collect();
        let ends: BTreeMap<u32, i64> = offsets_at(client, &topic, &asked, StartAt::Latest).await?.into_iter().collect();
        for (partition, offset) in offsets {
            let end = ends.get(&partition).copied().unwrap_or(-1);
            let lag = if offset >= 0 && end >= 0 { (end - offset).max(0).to_string() } else { "-".into() };
            println!("  {topic:<30}  {partition:>9}  {offset:>12}  {end:>12}  {lag:>10}");
        }
    }
    Ok(())
}

/// Every offset the group committed.
async fn committed_offsets(client: &mut Client, group: &str) -> Result<BTreeMap<(String, u32), i64>, ClientError> {
    // v2–v7: `topics: null` asks for every committed offset of one group.
    let version = client.version::<OffsetFetchRequest>(7)?;
    if version < 2 {
        return Err(ClientError::Unsupported { api: "OffsetFetch v2+".into() });
    }
    let request = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None);
    let response = client.send(&request, version).await?;
    check(response.error_code, || format!("offsets of group {group}"), None)?;
    let mut offsets = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            check(
                partition.error_code,
                || format!("offset of {}/{}", topic.name.as_str(), partition.partition_index),
                None,
            )?;
            offsets.insert((topic.name.to_string(), partition.partition_index as u32), partition.committed_offset);
        }
    }
    Ok(offsets)
}

async fn reset_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    partition: Option<u32>,
    to: StartAt,
) -> Result<(), ClientError> {
    let (_, count) = partitions(client, topic, Missing::Refuse).await?;
    let wanted: Vec<u32> = match partition {
        Some(p) if p < count => vec![p],
        Some(p) => return Err(ClientError::Refused(format!("topic {topic} has {count} partitions; no partition {p}"))),
        None => (0..count).collect(),
    };
    let targets = offsets_at(client, topic, &wanted, to).await?;
    let version = client.version::<OffsetCommitRequest>(8)?;
    let partitions = targets
        .iter()
        .map(|&(p, offset)| {
            OffsetCommitRequestPartition::default().with_partition_index(p as i32).with_committed_offset(offset)
        })
        .collect();
    // Generation -1 and no member: a commit from outside the group, which the coordinator only
    // accepts while the group has no members.
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(partitions),
        ]);
    let response = client.send(&request, version).await?;
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        check(
            partition.error_code,
            || {
                format!(
                    "resetting {group} on {topic}/{} (a group with members cannot be reset: stop its consumers)",
                    partition.partition_index
                )
            },
            None,
        )?;
    }
    for (partition, offset) in targets {
        println!("{group}  {topic}/{partition}  -> {offset}");
    }
    Ok(())
}

async fn delete(client: &mut Client, group: &str) -> Result<(), ClientError> {
    let version = client.version::<DeleteGroupsRequest>(2)?;
    let response =
        client.send(&DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]), version).await?;
    for result in &response.results {
        check(result.error_code, || format!("deleting group {group}"), None)?;
    }
    println!("deleted group {group}");
    Ok(())
}
