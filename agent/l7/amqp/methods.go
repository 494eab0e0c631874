package amqp

// Class ids of AMQP 0-9-1.
const (
	classConnection = 10
	classChannel    = 20
	classExchange   = 40
	classQueue      = 50
	classBasic      = 60
	classConfirm    = 85
	classTx         = 90
)

// role says what a method is in a session.
type role uint8

const (
	roleSkip     role = iota // not emitted (handshake, acks, flow control)
	roleRequest              // synchronous request: an -Ok (or a Close) answers it
	roleResponse             // answers the oldest request on its channel
	roleOneWay               // asynchronous: no answer expected
	roleClose                // Channel/Connection.Close: a request from the client, an error from the server
)

// method describes one AMQP method.
type method struct {
	name string
	role role
	// noWait is the bit index of the method's no-wait flag in its flags
	// octet (-1: none); with it set, no -Ok follows.
	noWait int8
}

// methodOf returns the description of (class, method id), and false for an
// unknown one.
func methodOf(class, id uint16) (method, bool) {
	switch class {
	case classConnection:
		switch id {
		case 10:
			return method{"Connection.Start", roleSkip, -1}, true
		case 11:
			return method{"Connection.Start-Ok", roleSkip, -1}, true
		case 20:
			return method{"Connection.Secure", roleSkip, -1}, true
		case 21:
			return method{"Connection.Secure-Ok", roleSkip, -1}, true
		case 30:
			return method{"Connection.Tune", roleSkip, -1}, true
		case 31:
			return method{"Connection.Tune-Ok", roleSkip, -1}, true
		case 40:
			return method{"Connection.Open", roleRequest, -1}, true
		case 41:
			return method{"Connection.Open-Ok", roleResponse, -1}, true
		case 50:
			return method{"Connection.Close", roleClose, -1}, true
		case 51:
			return method{"Connection.Close-Ok", roleResponse, -1}, true
		case 60:
			return method{"Connection.Blocked", roleSkip, -1}, true
		case 61:
			return method{"Connection.Unblocked", roleSkip, -1}, true
		case 70:
			return method{"Connection.Update-Secret", roleSkip, -1}, true
		case 71:
			return method{"Connection.Update-Secret-Ok", roleSkip, -1}, true
		}
	case classChannel:
		switch id {
		case 10:
			return method{"Channel.Open", roleRequest, -1}, true
		case 11:
			return method{"Channel.Open-Ok", roleResponse, -1}, true
		case 20:
			return method{"Channel.Flow", roleRequest, -1}, true
		case 21:
			return method{"Channel.Flow-Ok", roleResponse, -1}, true
		case 40:
			return method{"Channel.Close", roleClose, -1}, true
		case 41:
			return method{"Channel.Close-Ok", roleResponse, -1}, true
		}
	case classExchange:
		switch id {
		case 10:
			return method{"Exchange.Declare", roleRequest, 4}, true
		case 11:
			return method{"Exchange.Declare-Ok", roleResponse, -1}, true
		case 20:
			return method{"Exchange.Delete", roleRequest, 1}, true
		case 21:
			return method{"Exchange.Delete-Ok", roleResponse, -1}, true
		case 30:
			return method{"Exchange.Bind", roleRequest, 0}, true
		case 31:
			return method{"Exchange.Bind-Ok", roleResponse, -1}, true
		case 40:
			return method{"Exchange.Unbind", roleRequest, 0}, true
		case 51:
			return method{"Exchange.Unbind-Ok", roleResponse, -1}, true
		}
	case classQueue:
		switch id {
		case 10:
			return method{"Queue.Declare", roleRequest, 4}, true
		case 11:
			return method{"Queue.Declare-Ok", roleResponse, -1}, true
		case 20:
			return method{"Queue.Bind", roleRequest, 0}, true
		case 21:
			return method{"Queue.Bind-Ok", roleResponse, -1}, true
		case 30:
			return method{"Queue.Purge", roleRequest, 0}, true
		case 31:
			return method{"Queue.Purge-Ok", roleResponse, -1}, true
		case 40:
			return method{"Queue.Delete", roleRequest, 2}, true
		case 41:
			return method{"Queue.Delete-Ok", roleResponse, -1}, true
		case 50:
			return method{"Queue.Unbind", roleRequest, -1}, true
		case 51:
			return method{"Queue.Unbind-Ok", roleResponse, -1}, true
		}
	case classBasic:
		switch id {
		case 10:
			return method{"Basic.Qos", roleRequest, -1}, true
		case 11:
			return method{"Basic.Qos-Ok", roleResponse, -1}, true
		case 20:
			return method{"Basic.Consume", roleRequest, 3}, true
		case 21:
			return method{"Basic.Consume-Ok", roleResponse, -1}, true
		case 30:
			return method{"Basic.Cancel", roleRequest, 0}, true
		case 31:
			return method{"Basic.Cancel-Ok", roleResponse, -1}, true
		case 40:
			return method{"Basic.Publish", roleOneWay, -1}, true
		case 50:
			return method{"Basic.Return", roleOneWay, -1}, true
		case 60:
			return method{"Basic.Deliver", roleOneWay, -1}, true
		case 70:
			return method{"Basic.Get", roleRequest, -1}, true
		case 71:
			return method{"Basic.Get-Ok", roleResponse, -1}, true
		case 72:
			return method{"Basic.Get-Empty", roleResponse, -1}, true
		case 80:
			return method{"Basic.Ack", roleSkip, -1}, true
		case 90:
			return method{"Basic.Reject", roleSkip, -1}, true
		case 100:
			return method{"Basic.Recover-Async", roleSkip, -1}, true
		case 110:
			return method{"Basic.Recover", roleRequest, -1}, true
		case 111:
			return method{"Basic.Recover-Ok", roleResponse, -1}, true
		case 120:
			return method{"Basic.Nack", roleSkip, -1}, true
		}
	case classConfirm:
		switch id {
		case 10:
			return method{"Confirm.Select", roleRequest, 0}, true
		case 11:
			return method{"Confirm.Select-Ok", roleResponse, -1}, true
		}
	case classTx:
		switch id {
		case 10:
			return method{"Tx.Select", roleRequest, -1}, true
		case 11:
			return method{"Tx.Select-Ok", roleResponse, -1}, true
		case 20:
			return method{"Tx.Commit", roleRequest, -1}, true
		case 21:
			return method{"Tx.Commit-Ok", roleResponse, -1}, true
		case 30:
			return method{"Tx.Rollback", roleRequest, -1}, true
		case 31:
			return method{"Tx.Rollback-Ok", roleResponse, -1}, true
		}
	}
	return method{}, false
}

// fromServer reports whether only the server sends the method, so that a
// parser that missed the protocol header learns the client's side.
func fromServer(class, id uint16) bool {
	switch class {
	case classConnection:
		return id == 10 || id == 20 || id == 30 || id == 41
	case classBasic:
		return id == 11 || id == 21 || id == 50 || id == 60 || id == 71 || id == 72 || id == 111
	case classChannel:
		return id == 11 // Flow and Close can come from either side
	case classExchange, classQueue, classConfirm, classTx:
		return id%10 == 1 // -Ok methods
	}
	return false
}
