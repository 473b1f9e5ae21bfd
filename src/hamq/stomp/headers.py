"""Header names that the broker and the failover client must agree on."""

#: Duplicate detection: a resend carrying the same value to the same destination is stored once.
DUPLICATE_ID = "_AMQ_DUPL_ID"
#: The message-id a client put on its SEND; MESSAGE frames carry a broker-assigned message-id instead.
CLIENT_MESSAGE_ID = "client-message-id"
