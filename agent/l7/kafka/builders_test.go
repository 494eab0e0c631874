package kafka

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Builders of real Kafka frames with franz-go's kmsg encoders.

// reqFrame encodes a request with its header, as a client sends it.
func reqFrame(corr int32, clientID string, req kmsg.Request) []byte {
	b := make([]byte, 4, 64)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if req.IsFlexible() {
		b = append(b, 0) // no tagged fields
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// respFrame encodes a response with its header, as a broker sends it.
func respFrame(corr int32, resp kmsg.Response) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4, 64), uint32(corr))
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

var topicID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func produceReq(ver int16, acks int16, topic string, partitions ...int32) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.Version, r.Acks, r.TimeoutMillis = ver, acks, 1000
	t := kmsg.NewProduceRequestTopic()
	t.Topic, t.TopicID = topic, topicID
	for _, p := range partitions {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = p, make([]byte, 100)
		t.Partitions = append(t.Partitions, pp)
	}
	r.Topics = append(r.Topics, t)
	return r
}

func produceResp(ver int16, topic string, code int16) *kmsg.ProduceResponse {
	r := kmsg.NewPtrProduceResponse()
	r.Version = ver
	t := kmsg.NewProduceResponseTopic()
	t.Topic, t.TopicID = topic, topicID
	p := kmsg.NewProduceResponseTopicPartition()
	p.Partition, p.ErrorCode = 2, code
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	return r
}

func metadataReq(ver int16, topic string) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	r.Version = ver
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	r.Topics = append(r.Topics, t)
	return r
}

func metadataResp(ver int16, topic string, code int16) *kmsg.MetadataResponse {
	r := kmsg.NewPtrMetadataResponse()
	r.Version = ver
	b := kmsg.NewMetadataResponseBroker()
	b.Host, b.Port, b.Rack = "127.0.0.1", 9092, kmsg.StringPtr("r1")
	r.Brokers = append(r.Brokers, b, b)
	r.ClusterID = kmsg.StringPtr("cluster")
	t := kmsg.NewMetadataResponseTopic()
	t.Topic, t.TopicID, t.ErrorCode = kmsg.StringPtr(topic), topicID, code
	p := kmsg.NewMetadataResponseTopicPartition()
	p.Replicas, p.ISR = []int32{1, 2}, []int32{1}
	t.Partitions = append(t.Partitions, p, p)
	r.Topics = append(r.Topics, t)
	return r
}

func fetchReq(ver int16, topic string) *kmsg.FetchRequest {
	r := kmsg.NewPtrFetchRequest()
	r.Version = ver
	t := kmsg.NewFetchRequestTopic()
	t.Topic, t.TopicID = topic, topicID
	p := kmsg.NewFetchRequestTopicPartition()
	p.Partition = 0
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	r.Rack = "rack"
	return r
}

func fetchResp(ver int16, top, part int16) *kmsg.FetchResponse {
	r := kmsg.NewPtrFetchResponse()
	r.Version, r.ErrorCode = ver, top
	t := kmsg.NewFetchResponseTopic()
	t.Topic, t.TopicID = "orders", topicID
	p := kmsg.NewFetchResponseTopicPartition()
	p.ErrorCode, p.RecordBatches = part, make([]byte, 300)
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	return r
}

func joinReq(ver int16, group string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version, r.Group, r.ProtocolType = ver, group, "consumer"
	return r
}

func joinResp(ver, code int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version, r.ErrorCode = ver, code
	return r
}

func apiVersionsReq(ver int16) *kmsg.ApiVersionsRequest {
	r := kmsg.NewPtrApiVersionsRequest()
	r.Version, r.ClientSoftwareName, r.ClientSoftwareVersion = ver, "kgo", "1.0"
	return r
}

func apiVersionsResp(ver, code int16) *kmsg.ApiVersionsResponse {
	r := kmsg.NewPtrApiVersionsResponse()
	r.Version, r.ErrorCode = ver, code
	k := kmsg.NewApiVersionsResponseApiKey()
	k.MaxVersion = 9
	r.ApiKeys = append(r.ApiKeys, k, k, k)
	return r
}

func findCoordReq(ver int16, key string) *kmsg.FindCoordinatorRequest {
	r := kmsg.NewPtrFindCoordinatorRequest()
	r.Version, r.CoordinatorKey, r.CoordinatorKeys = ver, key, []string{key}
	return r
}

func findCoordResp(ver, code int16) *kmsg.FindCoordinatorResponse {
	r := kmsg.NewPtrFindCoordinatorResponse()
	r.Version, r.ErrorCode, r.Host = ver, code, "h"
	c := kmsg.NewFindCoordinatorResponseCoordinator()
	c.Key, c.Host, c.ErrorCode = "g", "h", code
	r.Coordinators = append(r.Coordinators, c)
	return r
}

func offsetFetchReq(ver int16, group string) *kmsg.OffsetFetchRequest {
	r := kmsg.NewPtrOffsetFetchRequest()
	r.Version, r.Group = ver, group
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = group
	r.Groups = append(r.Groups, g)
	return r
}

func offsetFetchResp(ver, part, group int16) *kmsg.OffsetFetchResponse {
	r := kmsg.NewPtrOffsetFetchResponse()
	r.Version, r.ErrorCode = ver, group
	t := kmsg.NewOffsetFetchResponseTopic()
	t.Topic = "orders"
	p := kmsg.NewOffsetFetchResponseTopicPartition()
	p.ErrorCode = part
	t.Partitions = append(t.Partitions, p)
	r.Topics = append(r.Topics, t)
	g := kmsg.NewOffsetFetchResponseGroup()
	g.Group, g.ErrorCode = "g", group
	gt := kmsg.NewOffsetFetchResponseGroupTopic()
	gt.Topic = "orders"
	gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
	gp.ErrorCode = part
	gt.Partitions = append(gt.Partitions, gp)
	g.Topics = append(g.Topics, gt)
	r.Groups = append(r.Groups, g)
	return r
}

func heartbeatReq(ver int16, group string) *kmsg.HeartbeatRequest {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version, r.Group = ver, group
	return r
}

func heartbeatResp(ver, code int16) *kmsg.HeartbeatResponse {
	r := kmsg.NewPtrHeartbeatResponse()
	r.Version, r.ErrorCode = ver, code
	return r
}
