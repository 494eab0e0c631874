// Code written from the Apache Kafka protocol message definitions
// (clients/src/main/resources/common/message/*.json): for each API key its
// name, the newest version known here and the first flexible version.

package kafka

// noFlex marks an API that has no flexible version (SaslHandshake, OffsetDelete).
const noFlex = 127

// apiInfo describes one Kafka API.
type apiInfo struct {
	name     string
	maxVer   int16 // newest version known here
	flexFrom int16 // first flexible version (request header v2, response header v1)
}

// apis is indexed by API key. It is read-only.
var apis = [...]apiInfo{
	0:  {"Produce", 13, 9},
	1:  {"Fetch", 18, 12},
	2:  {"ListOffsets", 11, 6},
	3:  {"Metadata", 13, 9},
	4:  {"LeaderAndIsr", 7, 4},
	5:  {"StopReplica", 4, 2},
	6:  {"UpdateMetadata", 8, 6},
	7:  {"ControlledShutdown", 3, 3},
	8:  {"OffsetCommit", 10, 8},
	9:  {"OffsetFetch", 10, 6},
	10: {"FindCoordinator", 6, 3},
	11: {"JoinGroup", 9, 6},
	12: {"Heartbeat", 4, 4},
	13: {"LeaveGroup", 5, 4},
	14: {"SyncGroup", 5, 4},
	15: {"DescribeGroups", 6, 5},
	16: {"ListGroups", 5, 3},
	17: {"SaslHandshake", 1, noFlex},
	18: {"ApiVersions", 5, 3},
	19: {"CreateTopics", 7, 5},
	20: {"DeleteTopics", 6, 4},
	21: {"DeleteRecords", 2, 2},
	22: {"InitProducerId", 5, 2},
	23: {"OffsetForLeaderEpoch", 4, 4},
	24: {"AddPartitionsToTxn", 5, 3},
	25: {"AddOffsetsToTxn", 4, 3},
	26: {"EndTxn", 5, 3},
	27: {"WriteTxnMarkers", 2, 1},
	28: {"TxnOffsetCommit", 6, 3},
	29: {"DescribeAcls", 3, 2},
	30: {"CreateAcls", 3, 2},
	31: {"DeleteAcls", 3, 2},
	32: {"DescribeConfigs", 4, 4},
	33: {"AlterConfigs", 2, 2},
	34: {"AlterReplicaLogDirs", 2, 2},
	35: {"DescribeLogDirs", 5, 2},
	36: {"SaslAuthenticate", 2, 2},
	37: {"CreatePartitions", 3, 2},
	38: {"CreateDelegationToken", 3, 2},
	39: {"RenewDelegationToken", 2, 2},
	40: {"ExpireDelegationToken", 2, 2},
	41: {"DescribeDelegationToken", 3, 2},
	42: {"DeleteGroups", 3, 2},
	43: {"ElectLeaders", 2, 2},
	44: {"IncrementalAlterConfigs", 1, 1},
	45: {"AlterPartitionAssignments", 1, 0},
	46: {"ListPartitionReassignments", 0, 0},
	47: {"OffsetDelete", 0, noFlex},
	48: {"DescribeClientQuotas", 1, 1},
	49: {"AlterClientQuotas", 1, 1},
	50: {"DescribeUserScramCredentials", 0, 0},
	51: {"AlterUserScramCredentials", 0, 0},
	52: {"Vote", 2, 0},
	53: {"BeginQuorumEpoch", 1, 1},
	54: {"EndQuorumEpoch", 1, 1},
	55: {"DescribeQuorum", 2, 0},
	56: {"AlterPartition", 3, 0},
	57: {"UpdateFeatures", 2, 0},
	58: {"Envelope", 0, 0},
	59: {"FetchSnapshot", 1, 0},
	60: {"DescribeCluster", 2, 0},
	61: {"DescribeProducers", 0, 0},
	62: {"BrokerRegistration", 4, 0},
	63: {"BrokerHeartbeat", 2, 0},
	64: {"UnregisterBroker", 0, 0},
	65: {"DescribeTransactions", 0, 0},
	66: {"ListTransactions", 2, 0},
	67: {"AllocateProducerIds", 0, 0},
	68: {"ConsumerGroupHeartbeat", 1, 0},
	69: {"ConsumerGroupDescribe", 1, 0},
	70: {"ControllerRegistration", 0, 0},
	71: {"GetTelemetrySubscriptions", 0, 0},
	72: {"PushTelemetry", 0, 0},
	73: {"AssignReplicasToDirs", 0, 0},
	74: {"ListConfigResources", 1, 0},
	75: {"DescribeTopicPartitions", 0, 0},
	76: {"ShareGroupHeartbeat", 1, 0},
	77: {"ShareGroupDescribe", 1, 0},
	78: {"ShareFetch", 2, 0},
	79: {"ShareAcknowledge", 2, 0},
	80: {"AddRaftVoter", 1, 0},
	81: {"RemoveRaftVoter", 0, 0},
	82: {"UpdateRaftVoter", 0, 0},
	83: {"InitializeShareGroupState", 0, 0},
	84: {"ReadShareGroupState", 0, 0},
	85: {"WriteShareGroupState", 1, 0},
	86: {"DeleteShareGroupState", 0, 0},
	87: {"ReadShareGroupStateSummary", 1, 0},
	88: {"StreamsGroupHeartbeat", 1, 0},
	89: {"StreamsGroupDescribe", 1, 0},
	90: {"DescribeShareGroupOffsets", 1, 0},
	91: {"AlterShareGroupOffsets", 0, 0},
	92: {"DeleteShareGroupOffsets", 0, 0},
	93: {"StreamsGroupTopologyDescriptionUpdate", 0, 0},
	94: {"UnregisterController", 0, 0},
}

// api returns the description of key, and false for an unknown key.
func api(key int16) (apiInfo, bool) {
	if key < 0 || int(key) >= len(apis) {
		return apiInfo{}, false
	}
	return apis[key], true
}

// flexible reports whether (key, version) uses the flexible encoding
// (compact strings and arrays, tagged fields).
func flexible(key, version int16) bool {
	a, ok := api(key)
	return ok && version >= a.flexFrom
}

// requestHeaderVersion is 2 for flexible requests, else 1. (ControlledShutdown
// v0's header v0 without client id is long gone from brokers and ignored.)
func requestHeaderVersion(key, version int16) int {
	if flexible(key, version) {
		return 2
	}
	return 1
}

// responseHeaderVersion is 1 for flexible responses, else 0. ApiVersions
// answers with header v0 whatever its version, so that a client can read the
// response of a broker that does not support the version it asked for.
func responseHeaderVersion(key, version int16) int {
	if key == keyApiVersions || !flexible(key, version) {
		return 0
	}
	return 1
}

// API keys decoded beyond their header.
const (
	keyProduce                int16 = 0
	keyFetch                  int16 = 1
	keyListOffsets            int16 = 2
	keyMetadata               int16 = 3
	keyOffsetCommit           int16 = 8
	keyOffsetFetch            int16 = 9
	keyFindCoordinator        int16 = 10
	keyJoinGroup              int16 = 11
	keyHeartbeat              int16 = 12
	keyLeaveGroup             int16 = 13
	keySyncGroup              int16 = 14
	keyDescribeGroups         int16 = 15
	keyListGroups             int16 = 16
	keySaslHandshake          int16 = 17
	keyApiVersions            int16 = 18
	keyCreateTopics           int16 = 19
	keyDeleteTopics           int16 = 20
	keyInitProducerId         int16 = 22
	keyAddOffsetsToTxn        int16 = 25
	keyEndTxn                 int16 = 26
	keyTxnOffsetCommit        int16 = 28
	keySaslAuthenticate       int16 = 36
	keyDeleteGroups           int16 = 42
	keyConsumerGroupHeartbeat int16 = 68
)
