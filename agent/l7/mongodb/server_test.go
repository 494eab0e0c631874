package mongodb

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// There is no MongoDB server in Debian: the live test runs this small
// server speaking the wire protocol (handshake over OP_QUERY or OP_MSG,
// ping, find with a cursor, insert, a duplicate key, an unknown command,
// zlib/zstd OP_COMPRESSED requests) in a child process, and drives it with
// the official Go driver in another child process.

const (
	serverEnv = "SIGHTLINE_MONGO_SERVE"  // listen address
	clientEnv = "SIGHTLINE_MONGO_CLIENT" // server address
)

// childMain runs the server or the client when the test binary was started
// as one; it reports whether it did.
func childMain() bool {
	if addr := os.Getenv(serverEnv); addr != "" {
		if err := serve(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return true
	}
	if addr := os.Getenv(clientEnv); addr != "" {
		if err := drive(addr); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		return true
	}
	return false
}

func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if err := serveConn(c, dec); err != nil && !errors.Is(err, io.EOF) {
				fmt.Fprintln(os.Stderr, "conn:", err)
			}
		}()
	}
}

func serveConn(c net.Conn, dec *zstd.Decoder) error {
	var replyID int32 = 1000
	for {
		// Read the header alone, as mongod does.
		var h [headerLen]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return err
		}
		n := int(binary.LittleEndian.Uint32(h[:]))
		if n < headerLen || n > 1<<20 {
			return fmt.Errorf("bad length %d", n)
		}
		body := make([]byte, n-headerLen)
		if _, err := io.ReadFull(c, body); err != nil {
			return err
		}
		reqID := int32(binary.LittleEndian.Uint32(h[4:]))
		op := int32(binary.LittleEndian.Uint32(h[12:]))
		if op == opCompressed {
			inner, err := inflate(body, dec)
			if err != nil {
				return err
			}
			op, body = int32(binary.LittleEndian.Uint32(body)), inner
		}
		replyID++
		var out []byte
		switch op {
		case opQuery:
			_, _, rest, ok := namespace(body[4:])
			if !ok || len(rest) < 8 {
				return errors.New("bad OP_QUERY")
			}
			out = opReplyMsg(replyID, reqID, 0, mustMarshal(helloReply()))
		case opMsg:
			flags := binary.LittleEndian.Uint32(body)
			if body[4] != 0 {
				return errors.New("first section is not the body")
			}
			doc := bson.Raw(body[5:])
			reply := handle(doc)
			if flags&flagMoreToCome != 0 {
				continue // unacknowledged: no reply
			}
			out = buildMsg(replyID, reqID, 0, mustMarshal(reply))
		default:
			return fmt.Errorf("opcode %d", op)
		}
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
}

func inflate(body []byte, dec *zstd.Decoder) ([]byte, error) {
	size := int(binary.LittleEndian.Uint32(body[4:]))
	data := body[9:]
	switch body[8] {
	case 0:
		return data, nil
	case 2:
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		out := make([]byte, size)
		_, err = io.ReadFull(zr, out)
		return out, err
	case 3:
		return dec.DecodeAll(data, nil)
	}
	return nil, fmt.Errorf("compressor %d", body[8])
}

func mustMarshal(d bson.D) []byte {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

func helloReply() bson.D {
	return bson.D{{Key: "ismaster", Value: true}, {Key: "helloOk", Value: true},
		{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(48000000)},
		{Key: "maxWriteBatchSize", Value: int32(100000)}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)}, {Key: "connectionId", Value: int32(1)},
		{Key: "minWireVersion", Value: int32(0)}, {Key: "maxWireVersion", Value: int32(21)},
		{Key: "compression", Value: bson.A{"zstd", "zlib"}},
		{Key: "readOnly", Value: false}, {Key: "ok", Value: 1.0}}
}

// handle answers one OP_MSG command.
func handle(doc bson.Raw) bson.D {
	elems, err := doc.Elements()
	if err != nil || len(elems) == 0 {
		return bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "bad body"}, {Key: "code", Value: int32(9)}, {Key: "codeName", Value: "FailedToParse"}}
	}
	cmd := elems[0].Key()
	coll, _ := elems[0].Value().StringValueOK()
	db, _ := doc.Lookup("$db").StringValueOK()
	switch cmd {
	case "hello", "isMaster", "ismaster":
		return helloReply()
	case "ping", "endSessions":
		return bson.D{{Key: "ok", Value: 1.0}}
	case "find":
		return bson.D{{Key: "cursor", Value: bson.D{
			{Key: "firstBatch", Value: bson.A{bson.D{{Key: "_id", Value: int32(1)}, {Key: "name", Value: "alice"}}}},
			{Key: "id", Value: int64(0)}, {Key: "ns", Value: db + "." + coll}}}, {Key: "ok", Value: 1.0}}
	case "insert":
		if coll == "dups" {
			return bson.D{{Key: "n", Value: int32(0)}, {Key: "writeErrors", Value: bson.A{bson.D{{Key: "index", Value: int32(0)},
				{Key: "code", Value: int32(11000)}, {Key: "errmsg", Value: "E11000 duplicate key error collection: " + db + ".dups index: _id_ dup key: { _id: 1 }"}}}},
				{Key: "ok", Value: 1.0}}
		}
		return bson.D{{Key: "n", Value: int32(1)}, {Key: "ok", Value: 1.0}}
	}
	return bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "no such command: '" + cmd + "'"},
		{Key: "code", Value: int32(59)}, {Key: "codeName", Value: "CommandNotFound"}}
}

// drive runs the client workload with the official driver.
func drive(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uri := "mongodb://" + addr + "/?directConnection=true&serverSelectionTimeoutMS=15000"
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	db := client.Database("shop")
	if err := db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	users := db.Collection("users")
	cur, err := users.Find(ctx, bson.D{{Key: "email", Value: "alice@example.com"}})
	if err != nil {
		return fmt.Errorf("find: %w", err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil || len(docs) != 1 {
		return fmt.Errorf("find: %v docs, %v", len(docs), err)
	}
	if _, err := users.InsertOne(ctx, bson.D{{Key: "name", Value: "bob"}}); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if _, err := db.Collection("dups").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("duplicate insert: %v", err)
	}
	if err := db.RunCommand(ctx, bson.D{{Key: "bogusCommand", Value: 1}}).Err(); err == nil {
		return errors.New("bogusCommand succeeded")
	}
	logs := db.Collection("logs", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	if _, err := logs.InsertOne(ctx, bson.D{{Key: "event", Value: "login"}}); err != nil {
		return fmt.Errorf("unacknowledged insert: %w", err)
	}

	// A second client compressing its commands with zlib.
	zc, err := mongo.Connect(options.Client().ApplyURI(uri + "&compressors=zlib"))
	if err != nil {
		return err
	}
	defer zc.Disconnect(context.Background())
	cur, err = zc.Database("zdb").Collection("zusers").Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("compressed find: %w", err)
	}
	return cur.All(ctx, &docs)
}
