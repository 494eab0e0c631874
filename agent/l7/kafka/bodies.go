package kafka

// Body layouts follow the Apache Kafka message definitions; only the fields
// up to what is needed are read, so a truncated capture usually suffices.

// reqInfo is what a request body names.
type reqInfo struct {
	topic        []byte // first topic's name (aliases the frame)
	topicID      [16]byte
	hasTopicID   bool // topic named by id only (newer Produce/Fetch/OffsetCommit)
	partition    int32
	onePartition bool   // exactly one topic with exactly one partition
	hasPartition bool   // partition is the first topic's first (Produce)
	records      []byte // captured prefix of that partition's records (Produce)
	group        []byte
	acks         int16
	acksKnown    bool
}

// topicRef reads a topic named by string (ver < idFrom) or by id.
func (r *reader) topicRef(ver, idFrom int16, info *reqInfo) {
	if ver >= idFrom {
		if id := r.uuid(); !r.failed() {
			info.topicID, info.hasTopicID = id, true
		}
		return
	}
	info.topic = r.str()
}

// firstTopic reads a topics array up to the first topic's partition:
// its name (or id), and its partition when it is the only one.
func (r *reader) firstTopic(ver, idFrom int16, info *reqInfo) {
	n := r.arrayLen()
	if n == 0 {
		return
	}
	r.topicRef(ver, idFrom, info)
	if pn := r.arrayLen(); pn == 1 && n == 1 {
		info.partition = r.i32()
		info.onePartition = !r.failed()
	}
}

// decodeRequest reads the body fields of the APIs it knows; r.flex is set.
func decodeRequest(r *reader, key, ver int16) (info reqInfo) {
	switch key {
	case keyProduce:
		if ver >= 3 {
			r.skipStr() // transactional id
		}
		info.acks = r.i16()
		info.acksKnown = !r.failed()
		r.skip(4) // timeout
		r.produceTopic(ver, &info)
	case keyFetch:
		if ver <= 14 {
			r.skip(4) // replica id
		}
		r.skip(8) // max wait, min bytes
		if ver >= 3 {
			r.skip(4) // max bytes
		}
		if ver >= 4 {
			r.skip(1) // isolation level
		}
		if ver >= 7 {
			r.skip(8) // session id, epoch
		}
		r.firstTopic(ver, 13, &info)
	case keyListOffsets:
		r.skip(4) // replica id
		if ver >= 2 {
			r.skip(1)
		}
		r.firstTopic(ver, 127, &info)
	case keyMetadata:
		if n := r.arrayLen(); n > 0 {
			if ver >= 10 {
				info.topicID = r.uuid()
				info.topic = r.str()
				info.hasTopicID = len(info.topic) == 0 && info.topicID != [16]byte{} && !r.failed()
			} else {
				info.topic = r.str()
			}
		}
	case keyOffsetCommit:
		info.group = r.str()
		if ver >= 1 {
			r.skip(4) // generation
			r.skipStr()
		}
		if ver >= 7 {
			r.skipStr() // instance id
		}
		if ver >= 2 && ver <= 4 {
			r.skip(8) // retention
		}
		r.firstTopic(ver, 10, &info)
	case keyOffsetFetch:
		if ver <= 7 {
			info.group = r.str()
		} else if r.arrayLen() > 0 {
			info.group = r.str()
		}
	case keyFindCoordinator:
		if ver <= 3 {
			info.group = r.str()
		} else {
			r.skip(1) // key type
			if r.arrayLen() > 0 {
				info.group = r.str()
			}
		}
	case keyJoinGroup, keyHeartbeat, keyLeaveGroup, keySyncGroup, keyConsumerGroupHeartbeat:
		info.group = r.str()
	case keyDescribeGroups, keyDeleteGroups:
		if r.arrayLen() > 0 {
			info.group = r.str()
		}
	case keyInitProducerId, keyAddOffsetsToTxn, keyEndTxn, keyTxnOffsetCommit:
		info.group = r.str() // transactional id
	case keyCreateTopics, keyDeleteTopics:
		if r.arrayLen() > 0 {
			info.topic = r.str()
		}
	}
	return info
}

// respInfo is what a response body says about its outcome.
type respInfo struct {
	code    int16
	hasCode bool
}

func (r *reader) code() respInfo {
	c := r.i16()
	if r.failed() {
		return respInfo{}
	}
	return respInfo{code: c, hasCode: true}
}

// firstPartitionCode reads a topics array to the first partition's error
// code (partition index then error code, as in Produce, Fetch, ListOffsets
// and OffsetCommit responses).
func (r *reader) firstPartitionCode(ver, idFrom int16) respInfo {
	if r.arrayLen() == 0 {
		return respInfo{}
	}
	var info reqInfo
	r.topicRef(ver, idFrom, &info)
	if r.arrayLen() == 0 {
		return respInfo{}
	}
	r.skip(4) // partition index
	return r.code()
}

// throttle skips a throttle time present from version from.
func (r *reader) throttle(ver, from int16) {
	if ver >= from {
		r.skip(4)
	}
}

// decodeResponse reads the error code of the APIs it knows (and learns
// topic ids from Metadata and CreateTopics); r.flex is set. Produce and
// Fetch are read by produceResponse and fetchResponse.
func (p *Parser) decodeResponse(r *reader, key, ver int16) respInfo {
	switch key {
	case keyListOffsets:
		r.throttle(ver, 2)
		return r.firstPartitionCode(ver, 127)
	case keyOffsetCommit:
		r.throttle(ver, 3)
		return r.firstPartitionCode(ver, 10)
	case keyMetadata:
		return p.metadata(r, ver)
	case keyOffsetFetch:
		return offsetFetch(r, ver)
	case keyFindCoordinator:
		r.throttle(ver, 1)
		if ver <= 3 {
			return r.code()
		}
		if r.arrayLen() == 0 {
			return respInfo{}
		}
		r.skipStr()
		r.skip(4)
		r.skipStr()
		r.skip(4)
		return r.code()
	case keyJoinGroup:
		r.throttle(ver, 2)
		return r.code()
	case keyHeartbeat, keyLeaveGroup, keySyncGroup, keyListGroups:
		r.throttle(ver, 1)
		return r.code()
	case keyDescribeGroups:
		r.throttle(ver, 1)
		if r.arrayLen() == 0 {
			return respInfo{}
		}
		return r.code()
	case keyApiVersions, keySaslHandshake, keySaslAuthenticate:
		return r.code()
	case keyInitProducerId, keyAddOffsetsToTxn, keyEndTxn, keyConsumerGroupHeartbeat:
		r.throttle(ver, 0)
		return r.code()
	case keyCreateTopics:
		r.throttle(ver, 2)
		if r.arrayLen() == 0 {
			return respInfo{}
		}
		name := r.str()
		if ver >= 7 {
			id := r.uuid()
			if !r.failed() {
				p.topics.learn(id, name)
			}
		}
		return r.code()
	case keyDeleteTopics:
		r.throttle(ver, 1)
		if r.arrayLen() == 0 {
			return respInfo{}
		}
		r.skipStr()
		if ver >= 6 {
			r.skip(16)
		}
		return r.code()
	}
	return respInfo{}
}

// metadata walks a Metadata response: the first topic error (else the first
// topic's code), and
// every topic's id (v10+) for the cache.
func (p *Parser) metadata(r *reader, ver int16) respInfo {
	r.throttle(ver, 3)
	nb := r.arrayLen()
	for i := 0; i < nb && !r.failed(); i++ {
		r.skip(4) // node id
		r.skipStr()
		r.skip(4) // port
		if ver >= 1 {
			r.skipStr() // rack
		}
		r.tags()
	}
	if ver >= 2 {
		r.skipStr() // cluster id
	}
	if ver >= 1 {
		r.skip(4) // controller id
	}
	nt := r.arrayLen()
	var first respInfo
	for i := 0; i < nt && !r.failed(); i++ {
		c := r.code()
		name := r.str()
		if ver >= 10 {
			id := r.uuid()
			if !r.failed() {
				p.topics.learn(id, name)
			}
		}
		if i == 0 || (first.code == 0 && c.code != 0) {
			first = c // the first topic's, or the first error
		}
		if ver >= 1 {
			r.skip(1) // is internal
		}
		np := r.arrayLen()
		for j := 0; j < np && !r.failed(); j++ {
			r.skip(2 + 4 + 4) // error, index, leader
			if ver >= 7 {
				r.skip(4) // leader epoch
			}
			arrays := 2 // replicas, isr
			if ver >= 5 {
				arrays++ // offline replicas
			}
			for k := 0; k < arrays; k++ {
				r.skip(4 * r.arrayLen())
			}
			r.tags()
		}
		if ver >= 8 {
			r.skip(4) // authorized operations
		}
		r.tags()
	}
	return first
}

// offsetFetch returns the group (v2+) error code, else the first
// partition's.
func offsetFetch(r *reader, ver int16) respInfo {
	r.throttle(ver, 3)
	if ver >= 8 {
		if r.arrayLen() == 0 {
			return respInfo{}
		}
		r.skipStr() // group id
	}
	var first respInfo
	nt := r.arrayLen()
	for i := 0; i < nt && !r.failed(); i++ {
		var info reqInfo
		r.topicRef(ver, 10, &info)
		np := r.arrayLen()
		for j := 0; j < np && !r.failed(); j++ {
			r.skip(4 + 8) // index, offset
			if ver >= 5 {
				r.skip(4) // leader epoch
			}
			r.skipStr() // metadata
			c := r.code()
			if i == 0 && j == 0 {
				first = c
			}
			r.tags()
		}
		r.tags()
	}
	if ver >= 2 {
		if top := r.code(); top.hasCode && (top.code != 0 || !first.hasCode) {
			return top
		}
	}
	return first
}
