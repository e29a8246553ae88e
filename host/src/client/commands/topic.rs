//! `rill topic create|list|describe|alter|delete`.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::protocol::StrBytes;

use super::lookup::{Missing, offsets_at, partitions, topic_name};
use super::{StartAt, TopicCommand, key_value};
use crate::client::{Client, ClientError, check};

/// `ConfigResource.Type` TOPIC, and the DEFAULT_CONFIG source.
const RESOURCE_TOPIC: i8 = 2;
const SOURCE_DEFAULT: i8 = 5;

pub async fn run(client: &mut Client, command: TopicCommand) -> Result<(), ClientError> {
    match command {
        TopicCommand::Create { name, partitions, configs } => create(client, &name, partitions, &configs).await,
        TopicCommand::List => list(client).await,
        TopicCommand::Describe { name } => describe(client, &name).await,
        TopicCommand::Alter { name, configs, deletes } => alter(client, &name, &configs, &deletes).await,
        TopicCommand::Delete { name } => delete(client, &name).await,
    }
}

async fn create(client: &mut Client, name: &str, count: u32, configs: &[String]) -> Result<(), ClientError> {
    let version = client.version::<CreateTopicsRequest>(7)?;
    let configs = configs
        .iter()
        .map(|text| {
            let (key, value) = key_value(text)?;
            Ok(CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key))
                .with_value(Some(StrBytes::from_string(value))))
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    let count = i32::try_from(count).map_err(|_| ClientError::Refused(format!("{count} partitions is too many")))?;
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(count)
        // -1: the broker's default (v4+); a single Rill node has one replica either way.
        .with_replication_factor(if version >= 4 { -1 } else { 1 })
        .with_configs(configs);
    let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
    let response = client.send(&request, version).await?;
    for result in &response.topics {
        check(result.error_code, || format!("creating topic {name}"), result.error_message.as_ref())?;
    }
    println!("created topic {name} with {count} partition{}", if count == 1 { "" } else { "s" });
    Ok(())
}

async fn list(client: &mut Client) -> Result<(), ClientError> {
    let version = client.version::<MetadataRequest>(12)?;
    let request = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
    let response = client.send(&request, version).await?;
    let mut topics: Vec<(String, usize)> =
        response.topics.iter().filter_map(|t| t.name.as_ref().map(|n| (n.to_string(), t.partitions.len()))).collect();
    topics.sort();
    if topics.is_empty() {
        println!("(no topics)");
    }
    for (name, count) in topics {
        println!("{name}\t{count} partition{}", if count == 1 { "" } else { "s" });
    }
    Ok(())
}

async fn describe(client: &mut Client, name: &str) -> Result<(), ClientError> {
    let (id, count) = partitions(client, name, Missing::Refuse).await?;
    let all: Vec<u32> = (0..count).collect();
    let starts = offsets_at(client, name, &all, StartAt::Earliest).await?;
    let ends = offsets_at(client, name, &all, StartAt::Latest).await?;
    println!("topic {name}  id {id}  partitions {count}");
    println!("  {:>9}  {:>12}  {:>12}  {:>12}", "partition", "start", "end", "records");
    for ((partition, start), (_, end)) in starts.iter().zip(&ends) {
        println!("  {partition:>9}  {start:>12}  {end:>12}  {:>12}", end - start);
    }
    let version = client.version::<DescribeConfigsRequest>(4)?;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None),
    ]);
    let response = client.send(&request, version).await?;
    println!("settings");
    for result in &response.results {
        check(result.error_code, || format!("settings of {name}"), result.error_message.as_ref())?;
        for entry in &result.configs {
            let value = entry.value.as_ref().map_or("(none)", |v| v.as_str());
            let source = if entry.config_source == SOURCE_DEFAULT { "  (default)" } else { "" };
            println!("  {} = {value}{source}", entry.name.as_str());
        }
    }
    Ok(())
}

async fn alter(client: &mut Client, name: &str, configs: &[String], deletes: &[String]) -> Result<(), ClientError> {
    if configs.is_empty() && deletes.is_empty() {
        return Err(ClientError::Refused("nothing to change: give --config KEY=VALUE or --delete-config KEY".into()));
    }
    let version = client.version::<IncrementalAlterConfigsRequest>(1)?;
    let mut entries = Vec::new();
    for text in configs {
        let (key, value) = key_value(text)?;
        entries.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(value))),
        );
    }
    for key in deletes {
        entries.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_config_operation(1)
                .with_value(None),
        );
    }
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configs(entries),
    ]);
    let response = client.send(&request, version).await?;
    for result in &response.responses {
        check(result.error_code, || format!("altering topic {name}"), result.error_message.as_ref())?;
    }
    println!("altered topic {name}");
    Ok(())
}

async fn delete(client: &mut Client, name: &str) -> Result<(), ClientError> {
    let version = client.version::<DeleteTopicsRequest>(6)?;
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(name)))])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)])
    }
    .with_timeout_ms(30_000);
    let response = client.send(&request, version).await?;
    for result in &response.responses {
        check(result.error_code, || format!("deleting topic {name}"), result.error_message.as_ref())?;
    }
    println!("deleted topic {name}");
    Ok(())
}
