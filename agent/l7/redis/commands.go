package redis

// maskRule says which arguments of a command are kept in Resource; the
// others are replaced by "?" unless KeepSecrets is set.
type maskRule uint8

const (
	keepFirst  maskRule = iota // the key (first argument); values masked
	keepAll                    // every argument is a key, index or option
	keepNone                   // every argument may be a value
	keepPairs                  // MSET k v k v: keys kept, values masked
	secretAll                  // AUTH: every argument is a credential, always masked
	secretAuth                 // HELLO, MIGRATE: what follows AUTH/AUTH2 is a credential, always masked
)

// cmdInfo describes a known command.
type cmdInfo struct {
	name string
	rule maskRule
	// container commands (CONFIG, CLIENT ...) take a subcommand: the request
	// type is "CONFIG GET" and the rule applies to the arguments after it.
	container bool
}

// maxCommandLen bounds a command name looked up in the table.
const maxCommandLen = 24

// commands maps upper-case command names to their description. The names are
// constants, so a request type costs no allocation.
var commands = func() map[string]cmdInfo {
	m := make(map[string]cmdInfo, 256)
	add := func(rule maskRule, names ...string) {
		for _, n := range names {
			m[n] = cmdInfo{name: n, rule: rule}
		}
	}
	add(keepAll,
		// keys only, or keys with indexes, counts, timeouts and options
		"GET", "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "UNWATCH", "TYPE", "TTL", "PTTL",
		"EXPIRETIME", "PEXPIRETIME", "PERSIST", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "INCR", "DECR",
		"INCRBY", "DECRBY", "STRLEN", "GETDEL", "GETEX", "GETRANGE", "SUBSTR", "GETBIT", "BITCOUNT", "BITPOS",
		"LLEN", "LRANGE", "LINDEX", "LPOP", "RPOP", "BLPOP", "BRPOP", "BLMOVE", "LMOVE", "RPOPLPUSH",
		"BRPOPLPUSH", "LMPOP", "BLMPOP", "LTRIM", "SCARD", "SMEMBERS", "SPOP", "SRANDMEMBER", "SUNION",
		"SINTER", "SDIFF", "SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE", "SINTERCARD", "HLEN", "HKEYS", "HVALS",
		"HGETALL", "HGET", "HMGET", "HEXISTS", "HDEL", "HSTRLEN", "HRANDFIELD", "HSCAN", "SSCAN", "ZSCAN",
		"SCAN", "KEYS", "ZCARD", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX",
		"ZREVRANGEBYLEX", "ZCOUNT", "ZLEXCOUNT", "ZPOPMIN", "ZPOPMAX", "BZPOPMIN", "BZPOPMAX", "ZMPOP",
		"BZMPOP", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREMRANGEBYLEX", "ZUNION", "ZINTER", "ZDIFF",
		"ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE", "ZINTERCARD", "ZRANDMEMBER", "PFCOUNT", "PFMERGE",
		"RENAME", "RENAMENX", "COPY", "MOVE", "DUMP", "SELECT", "SWAPDB", "DBSIZE", "FLUSHDB", "FLUSHALL",
		"INFO", "PING", "QUIT", "RESET", "MULTI", "EXEC", "DISCARD", "TIME", "LASTSAVE", "SAVE", "BGSAVE",
		"BGREWRITEAOF", "SHUTDOWN", "ROLE", "MONITOR", "SYNC", "PSYNC", "REPLICAOF", "SLAVEOF", "READONLY",
		"READWRITE", "WAIT", "WAITAOF", "RANDOMKEY", "SORT", "SORT_RO", "SUBSCRIBE", "UNSUBSCRIBE",
		"PSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE", "XLEN", "XRANGE", "XREVRANGE", "XREAD",
		"XREADGROUP", "XACK", "XDEL", "XTRIM", "XPENDING", "XCLAIM", "XAUTOCLAIM", "GEODIST", "GEOPOS",
		"GEOHASH", "GEORADIUS", "GEORADIUSBYMEMBER", "GEOSEARCH", "GEOSEARCHSTORE", "LCS", "OBJECT",
		"EVALSHA", "EVALSHA_RO", "FCALL", "FCALL_RO", "LOLWUT", "ASKING")
	add(keepFirst,
		"SET", "SETNX", "SETEX", "PSETEX", "GETSET", "APPEND", "SETRANGE", "SETBIT", "INCRBYFLOAT",
		"LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LINSERT", "LSET", "LREM", "LPOS", "SADD", "SREM", "SISMEMBER",
		"SMISMEMBER", "SMOVE", "HSET", "HSETNX", "HMSET", "HINCRBY", "HINCRBYFLOAT", "ZADD", "ZREM", "ZINCRBY",
		"ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "PFADD", "PUBLISH", "SPUBLISH", "XADD", "XSETID", "GEOADD",
		"RESTORE", "RESTORE-ASKING", "BITFIELD", "BITFIELD_RO", "BITOP", "EVAL", "EVAL_RO")
	add(keepNone, "ECHO")
	add(keepPairs, "MSET", "MSETNX")
	add(secretAll, "AUTH")
	add(secretAuth, "HELLO", "MIGRATE")
	for _, n := range []string{"CONFIG", "CLIENT", "CLUSTER", "COMMAND", "MEMORY", "SCRIPT", "ACL", "XINFO",
		"XGROUP", "FUNCTION", "LATENCY", "MODULE", "PUBSUB", "SLOWLOG", "DEBUG", "OBJECT"} {
		m[n] = cmdInfo{name: n, rule: keepFirst, container: true}
	}
	return m
}()

// subcommands are the two-word request types of container commands; the
// strings are built once so request types cost no allocation.
var subcommands = func() map[string]string {
	m := make(map[string]string, 128)
	add := func(cmd string, subs ...string) {
		for _, s := range subs {
			m[cmd+" "+s] = cmd + " " + s
		}
	}
	add("CONFIG", "GET", "SET", "RESETSTAT", "REWRITE")
	add("CLIENT", "SETNAME", "GETNAME", "ID", "INFO", "LIST", "KILL", "PAUSE", "UNPAUSE", "REPLY", "SETINFO",
		"TRACKING", "TRACKINGINFO", "CACHING", "GETREDIR", "NO-EVICT", "NO-TOUCH", "UNBLOCK")
	add("CLUSTER", "INFO", "NODES", "SLOTS", "SHARDS", "KEYSLOT", "MYID", "COUNTKEYSINSLOT", "GETKEYSINSLOT",
		"REPLICAS", "RESET", "FAILOVER")
	add("COMMAND", "COUNT", "DOCS", "INFO", "LIST", "GETKEYS")
	add("MEMORY", "USAGE", "STATS", "DOCTOR", "PURGE")
	add("SCRIPT", "LOAD", "EXISTS", "FLUSH", "KILL")
	add("ACL", "SETUSER", "GETUSER", "DELUSER", "LIST", "USERS", "WHOAMI", "CAT", "LOG", "LOAD", "SAVE",
		"GENPASS", "DRYRUN")
	add("XINFO", "STREAM", "GROUPS", "CONSUMERS")
	add("XGROUP", "CREATE", "DESTROY", "SETID", "CREATECONSUMER", "DELCONSUMER")
	add("FUNCTION", "LOAD", "LIST", "DELETE", "FLUSH", "DUMP", "RESTORE", "STATS", "KILL")
	add("LATENCY", "LATEST", "HISTORY", "RESET", "DOCTOR")
	add("MODULE", "LIST", "LOAD", "LOADEX", "UNLOAD")
	add("PUBSUB", "CHANNELS", "NUMSUB", "NUMPAT", "SHARDCHANNELS", "SHARDNUMSUB")
	add("SLOWLOG", "GET", "LEN", "RESET")
	add("DEBUG", "OBJECT", "SLEEP", "RELOAD")
	add("OBJECT", "ENCODING", "FREQ", "IDLETIME", "REFCOUNT")
	return m
}()

// lookupCommand returns the description of the command b (any case).
func lookupCommand(b []byte) (cmdInfo, bool) {
	var up [maxCommandLen]byte
	if len(b) == 0 || len(b) > len(up) {
		return cmdInfo{}, false
	}
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	ci, ok := commands[string(up[:len(b)])]
	return ci, ok
}

// lookupSubcommand returns the two-word request type "CMD SUB", or "".
func lookupSubcommand(cmd string, sub []byte) string {
	var up [2*maxCommandLen + 1]byte
	if len(sub) == 0 || len(cmd)+1+len(sub) > len(up) {
		return ""
	}
	n := copy(up[:], cmd)
	up[n] = ' '
	n++
	for _, c := range sub {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[n] = c
		n++
	}
	return subcommands[string(up[:n])]
}

// isCommandToken reports whether b can be an unknown (module) command name:
// letters, digits, '.', '_', '-' and '|'.
func isCommandToken(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == '|':
		default:
			return false
		}
	}
	return true
}

// upper returns b upper-cased as a new string (unknown commands only).
func upper(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// isCredentialKeyword reports whether an argument introduces credentials
// (HELLO ... AUTH user pass, MIGRATE ... AUTH pass | AUTH2 user pass).
func isCredentialKeyword(b []byte) int {
	if len(b) == 4 && (b[0]|0x20) == 'a' && (b[1]|0x20) == 'u' && (b[2]|0x20) == 't' && (b[3]|0x20) == 'h' {
		return 2 // HELLO AUTH user pass; MIGRATE AUTH pass is covered too (one extra mask at most)
	}
	if len(b) == 5 && (b[0]|0x20) == 'a' && (b[1]|0x20) == 'u' && (b[2]|0x20) == 't' && (b[3]|0x20) == 'h' && b[4] == '2' {
		return 2
	}
	return 0
}
