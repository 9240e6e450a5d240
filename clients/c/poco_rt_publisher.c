/*
 * poco_rt_publisher: the wire format's frame encoder and a non-blocking ZeroMQ PUSH publisher.
 *
 * The encoder writes every integer byte by byte in little-endian order, so the bytes are the same on
 * any host; the payload is one memcpy on a little-endian host and a byte swap per value elsewhere.
 * The publisher keeps one fixed header buffer and allocates nothing per frame itself: ZeroMQ's
 * messages for the two parts are the one copy that lets the caller reuse its buffers at once (the
 * Python FramePublisher's copy=True); ZeroMQ keeps parts of up to about 30 bytes inside the message
 * and allocates for longer ones, so a frame costs ZeroMQ one or two allocations, as in pyzmq.
 * See poco_rt_publisher.h for the contract.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200112L /* clock_gettime, in plain C99 */
#endif

#include "poco_rt_publisher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#ifdef _WIN32
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0602 /* Windows 8: GetSystemTimePreciseAsFileTime */
#endif
#include <windows.h>
#else
#include <time.h>
#endif

#define Z85_KEY_CHARS 40u /* a 32-byte Curve25519 key in Z85 */

static const uint8_t MAGIC[4] = {'P', 'C', 'R', 'T'};
enum { MESSAGE_KIND_FRAME = 1 };

struct poco_rt_publisher {
    void *context;
    void *socket;
    int linger_ms;
    uint64_t sent;
    uint64_t dropped;
    size_t session_bytes;
    char session[POCO_RT_MAX_SESSION_NAME_BYTES + 1];
    uint8_t header[POCO_RT_MAX_FRAME_HEADER_BYTES];
};

const char *poco_rt_status_message(int32_t status) {
    switch (status) {
    case POCO_RT_OK:
        return "ok";
    case POCO_RT_DROPPED:
        return "dropped: queue_frames frames were already waiting for the server; the frame was counted, not sent";
    case POCO_RT_ERR_INVALID_ARGUMENT:
        return "invalid_argument: a NULL pointer, queue_frames 0 or a negative linger_ms";
    case POCO_RT_ERR_BAD_SESSION_NAME:
        return "bad_session_name: use 1-128 letters, digits, '.', '_' and '-', starting with a letter or digit";
    case POCO_RT_ERR_BAD_DTYPE:
        return "bad_dtype: send POCO_RT_FLOAT32 (1), POCO_RT_FLOAT64 (2) or POCO_RT_UINT16 (3)";
    case POCO_RT_ERR_BAD_SHAPE:
        return "bad_shape: unit_count is 0; a frame carries at least one unit";
    case POCO_RT_ERR_OVERSIZED:
        return "oversized: unit_count is over 131072 (POCO_RT_MAX_UNITS) or the payload over 16 MiB";
    case POCO_RT_ERR_BUFFER_TOO_SMALL:
        return "buffer_too_small: the output buffer cannot hold the encoded part";
    case POCO_RT_ERR_BAD_CURVE_KEY:
        return "bad_curve_key: a CURVE key is 40 Z85 characters; give public_key and secret_key both or neither";
    case POCO_RT_ERR_NO_CURVE:
        return "no_curve: this libzmq was built without CURVE; install one built with libsodium";
    case POCO_RT_ERR_ZMQ:
        return "zmq: ZeroMQ refused the endpoint, the socket or a send; an endpoint reads tcp://HOST:PORT";
    case POCO_RT_ERR_NO_MEMORY:
        return "no_memory: the publisher or a frame's message could not be allocated";
    default:
        return "unknown status: not one of poco_rt_publisher.h's POCO_RT_* codes";
    }
}

int64_t poco_rt_now_ns(void) {
#ifdef _WIN32
    /* FILETIME counts 100 ns ticks since 1601-01-01; the Unix epoch is 11644473600 s later. */
    FILETIME now;
    ULARGE_INTEGER ticks;
    GetSystemTimePreciseAsFileTime(&now);
    ticks.LowPart = now.dwLowDateTime;
    ticks.HighPart = now.dwHighDateTime;
    return ((int64_t)ticks.QuadPart - INT64_C(116444736000000000)) * 100;
#else
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * INT64_C(1000000000) + (int64_t)now.tv_nsec;
#endif
}

uint32_t poco_rt_dtype_bytes(int32_t dtype) {
    switch (dtype) {
    case POCO_RT_FLOAT32:
        return 4;
    case POCO_RT_FLOAT64:
        return 8;
    case POCO_RT_UINT16:
        return 2;
    default:
        return 0;
    }
}

static int is_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* The session name's length if it is valid (the server's rule, docs/protocol.md), else 0. */
static size_t session_name_bytes(const char *session) {
    size_t length = 0;
    if (session[0] == '.' || session[0] == '_' || session[0] == '-') {
        return 0;
    }
    while (session[length] != '\0') {
        if (!is_name_char(session[length]) || length == POCO_RT_MAX_SESSION_NAME_BYTES) {
            return 0;
        }
        ++length;
    }
    return length;
}

/* The checks a receiver applies to a frame's declared size, after the session name's. */
static int32_t check_values(int32_t dtype, uint32_t unit_count) {
    if (poco_rt_dtype_bytes(dtype) == 0) {
        return POCO_RT_ERR_BAD_DTYPE;
    }
    if (unit_count == 0) {
        return POCO_RT_ERR_BAD_SHAPE;
    }
    if (unit_count > POCO_RT_MAX_UNITS ||
        (uint64_t)unit_count * poco_rt_dtype_bytes(dtype) > (uint64_t)POCO_RT_MAX_PAYLOAD_BYTES) {
        return POCO_RT_ERR_OVERSIZED;
    }
    return POCO_RT_OK;
}

static void put_le(uint8_t *out, uint64_t value, unsigned bytes) {
    unsigned i;
    for (i = 0; i < bytes; ++i) {
        out[i] = (uint8_t)(value >> (8u * i));
    }
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* The header's fixed 28 bytes and the name, at the offsets of docs/protocol.md's frame table. */
static uint32_t write_header(uint8_t *header, const char *session, size_t name_bytes, int32_t dtype,
                             uint32_t unit_count, uint64_t frame_index, int64_t acquisition_time_ns) {
    memcpy(header, MAGIC, sizeof MAGIC);
    header[4] = POCO_RT_WIRE_VERSION;
    header[5] = MESSAGE_KIND_FRAME;
    header[6] = (uint8_t)dtype;
    header[7] = (uint8_t)name_bytes;
    put_le(header + 8, frame_index, 8);
    put_le(header + 16, (uint64_t)acquisition_time_ns, 8); /* two's complement, as struct's "<q" */
    put_le(header + 24, unit_count, 4);
    memcpy(header + POCO_RT_FRAME_HEADER_FIXED_BYTES, session, name_bytes);
    return (uint32_t)(POCO_RT_FRAME_HEADER_FIXED_BYTES + name_bytes);
}

/* The values in little-endian order: one copy on a little-endian host, a swap per value elsewhere. */
static void write_payload(uint8_t *payload, const void *values, uint32_t item_bytes, uint32_t unit_count) {
    const uint8_t *source = (const uint8_t *)values;
    uint32_t unit;
    uint32_t byte;
    if (host_is_little_endian()) {
        memcpy(payload, values, (size_t)unit_count * item_bytes);
        return;
    }
    for (unit = 0; unit < unit_count; ++unit) {
        for (byte = 0; byte < item_bytes; ++byte) {
            payload[unit * item_bytes + byte] = source[unit * item_bytes + item_bytes - 1 - byte];
        }
    }
}

int32_t poco_rt_encode_frame_header(uint8_t *header, uint32_t header_capacity, uint32_t *written_bytes,
                                    const char *session, int32_t dtype, uint32_t unit_count, uint64_t frame_index,
                                    int64_t acquisition_time_ns) {
    size_t name_bytes;
    int32_t status;
    if (header == NULL || written_bytes == NULL || session == NULL) {
        return POCO_RT_ERR_INVALID_ARGUMENT;
    }
    if (poco_rt_dtype_bytes(dtype) == 0) { /* the order of poco_rt.wire.encode_frame's checks */
        return POCO_RT_ERR_BAD_DTYPE;
    }
    name_bytes = session_name_bytes(session);
    if (name_bytes == 0) {
        return POCO_RT_ERR_BAD_SESSION_NAME;
    }
    status = check_values(dtype, unit_count);
    if (status != POCO_RT_OK) {
        return status;
    }
    if (header_capacity < POCO_RT_FRAME_HEADER_FIXED_BYTES + name_bytes) {
        return POCO_RT_ERR_BUFFER_TOO_SMALL;
    }
    *written_bytes = write_header(header, session, name_bytes, dtype, unit_count, frame_index, acquisition_time_ns);
    return POCO_RT_OK;
}

int32_t poco_rt_encode_frame_payload(uint8_t *payload, uint32_t payload_capacity, uint32_t *written_bytes,
                                     const void *values, int32_t dtype, uint32_t unit_count) {
    int32_t status;
    if (payload == NULL || written_bytes == NULL || values == NULL) {
        return POCO_RT_ERR_INVALID_ARGUMENT;
    }
    status = check_values(dtype, unit_count);
    if (status != POCO_RT_OK) {
        return status;
    }
    if (payload_capacity < unit_count * poco_rt_dtype_bytes(dtype)) {
        return POCO_RT_ERR_BUFFER_TOO_SMALL;
    }
    write_payload(payload, values, poco_rt_dtype_bytes(dtype), unit_count);
    *written_bytes = unit_count * poco_rt_dtype_bytes(dtype);
    return POCO_RT_OK;
}

static int32_t check_curve_key(const char *key) {
    return key != NULL && strlen(key) == Z85_KEY_CHARS ? POCO_RT_OK : POCO_RT_ERR_BAD_CURVE_KEY;
}

/* The Python CurveKeys' rules: no client keys without a server key, both client keys or neither. */
static int32_t check_curve_keys(const char *server_public_key, const char *public_key, const char *secret_key) {
    if (server_public_key == NULL) {
        return public_key == NULL && secret_key == NULL ? POCO_RT_OK : POCO_RT_ERR_BAD_CURVE_KEY;
    }
    if ((public_key == NULL) != (secret_key == NULL) || check_curve_key(server_public_key) != POCO_RT_OK) {
        return POCO_RT_ERR_BAD_CURVE_KEY;
    }
    if (public_key != NULL && (check_curve_key(public_key) != POCO_RT_OK || check_curve_key(secret_key) != POCO_RT_OK)) {
        return POCO_RT_ERR_BAD_CURVE_KEY;
    }
    return zmq_has("curve") ? POCO_RT_OK : POCO_RT_ERR_NO_CURVE;
}

/* Before connect: ZeroMQ reads the keys when the connection's handshake starts. */
static int apply_curve(void *socket, const char *server_public_key, const char *public_key, const char *secret_key) {
    char fresh_public[Z85_KEY_CHARS + 1];
    char fresh_secret[Z85_KEY_CHARS + 1];
    if (public_key == NULL) {
        if (zmq_curve_keypair(fresh_public, fresh_secret) != 0) {
            return -1;
        }
        public_key = fresh_public;
        secret_key = fresh_secret;
    }
    return zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, server_public_key, Z85_KEY_CHARS) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, public_key, Z85_KEY_CHARS) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret_key, Z85_KEY_CHARS) != 0
               ? -1
               : 0;
}

static void set_status(int32_t *status, int32_t value) {
    if (status != NULL) {
        *status = value;
    }
}

poco_rt_publisher *poco_rt_publisher_open_curve(const char *endpoint, const char *session, uint32_t queue_frames,
                                                int32_t linger_ms, const char *server_public_key,
                                                const char *public_key, const char *secret_key, int32_t *status) {
    poco_rt_publisher *publisher;
    int high_water_mark = queue_frames > (uint32_t)INT32_MAX ? INT32_MAX : (int)queue_frames;
    int32_t checked;
    if (endpoint == NULL || session == NULL || queue_frames == 0 || linger_ms < 0) {
        set_status(status, POCO_RT_ERR_INVALID_ARGUMENT);
        return NULL;
    }
    if (session_name_bytes(session) == 0) { /* a name the server would refuse fails here, not per frame */
        set_status(status, POCO_RT_ERR_BAD_SESSION_NAME);
        return NULL;
    }
    checked = check_curve_keys(server_public_key, public_key, secret_key);
    if (checked != POCO_RT_OK) { /* checked before any socket is made, so nothing is left open behind it */
        set_status(status, checked);
        return NULL;
    }
    publisher = (poco_rt_publisher *)calloc(1, sizeof *publisher);
    if (publisher == NULL) {
        set_status(status, POCO_RT_ERR_NO_MEMORY);
        return NULL;
    }
    publisher->linger_ms = linger_ms;
    publisher->session_bytes = session_name_bytes(session);
    memcpy(publisher->session, session, publisher->session_bytes + 1);
    publisher->context = zmq_ctx_new();
    publisher->socket = publisher->context == NULL ? NULL : zmq_socket(publisher->context, ZMQ_PUSH);
    if (publisher->socket == NULL ||
        zmq_setsockopt(publisher->socket, ZMQ_SNDHWM, &high_water_mark, sizeof high_water_mark) != 0 ||
        zmq_setsockopt(publisher->socket, ZMQ_LINGER, &publisher->linger_ms, sizeof publisher->linger_ms) != 0 ||
        (server_public_key != NULL &&
         apply_curve(publisher->socket, server_public_key, public_key, secret_key) != 0) ||
        zmq_connect(publisher->socket, endpoint) != 0) {
        poco_rt_publisher_close(publisher);
        set_status(status, POCO_RT_ERR_ZMQ);
        return NULL;
    }
    set_status(status, POCO_RT_OK);
    return publisher;
}

poco_rt_publisher *poco_rt_publisher_open(const char *endpoint, const char *session, uint32_t queue_frames,
                                          int32_t linger_ms, int32_t *status) {
    return poco_rt_publisher_open_curve(endpoint, session, queue_frames, linger_ms, NULL, NULL, NULL, status);
}

/* Sends the prepared header, then the payload from a ZeroMQ message the values are copied into.
 * ZeroMQ takes all parts of a message or none: a header refused for a full queue means a drop, and
 * the payload after an accepted header is always accepted. The payload's message is made before
 * the header goes, so that no failure can leave a message half sent. */
static int32_t send_parts(poco_rt_publisher *publisher, uint32_t header_bytes, const void *values,
                          uint32_t item_bytes, uint32_t unit_count) {
    zmq_msg_t payload;
    if (zmq_msg_init_size(&payload, (size_t)unit_count * item_bytes) != 0) {
        return POCO_RT_ERR_NO_MEMORY;
    }
    if (zmq_send(publisher->socket, publisher->header, header_bytes, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int32_t status = zmq_errno() == EAGAIN ? POCO_RT_DROPPED : POCO_RT_ERR_ZMQ;
        publisher->dropped += status == POCO_RT_DROPPED;
        zmq_msg_close(&payload);
        return status;
    }
    write_payload((uint8_t *)zmq_msg_data(&payload), values, item_bytes, unit_count);
    if (zmq_msg_send(&payload, publisher->socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&payload);
        return POCO_RT_ERR_ZMQ;
    }
    publisher->sent += 1;
    return POCO_RT_OK;
}

int32_t poco_rt_publisher_send(poco_rt_publisher *publisher, const void *values, int32_t dtype, uint32_t unit_count,
                               uint64_t frame_index, int64_t acquisition_time_ns) {
    uint32_t header_bytes;
    int32_t status;
    if (publisher == NULL || values == NULL) {
        return POCO_RT_ERR_INVALID_ARGUMENT;
    }
    status = check_values(dtype, unit_count); /* the session name was checked at open */
    if (status != POCO_RT_OK) {
        return status;
    }
    header_bytes = write_header(publisher->header, publisher->session, publisher->session_bytes, dtype, unit_count,
                                frame_index, acquisition_time_ns);
    return send_parts(publisher, header_bytes, values, poco_rt_dtype_bytes(dtype), unit_count);
}

int32_t poco_rt_publisher_send_f32(poco_rt_publisher *publisher, const float *values, uint32_t unit_count,
                                   uint64_t frame_index, int64_t acquisition_time_ns) {
    return poco_rt_publisher_send(publisher, values, POCO_RT_FLOAT32, unit_count, frame_index, acquisition_time_ns);
}

int32_t poco_rt_publisher_send_f64(poco_rt_publisher *publisher, const double *values, uint32_t unit_count,
                                   uint64_t frame_index, int64_t acquisition_time_ns) {
    return poco_rt_publisher_send(publisher, values, POCO_RT_FLOAT64, unit_count, frame_index, acquisition_time_ns);
}

int32_t poco_rt_publisher_send_u16(poco_rt_publisher *publisher, const uint16_t *values, uint32_t unit_count,
                                   uint64_t frame_index, int64_t acquisition_time_ns) {
    return poco_rt_publisher_send(publisher, values, POCO_RT_UINT16, unit_count, frame_index, acquisition_time_ns);
}

uint64_t poco_rt_publisher_sent(const poco_rt_publisher *publisher) {
    return publisher == NULL ? 0 : publisher->sent;
}

uint64_t poco_rt_publisher_dropped(const poco_rt_publisher *publisher) {
    return publisher == NULL ? 0 : publisher->dropped;
}

void poco_rt_publisher_close(poco_rt_publisher *publisher) {
    if (publisher == NULL) {
        return;
    }
    if (publisher->socket != NULL) {
        zmq_close(publisher->socket); /* the socket's linger, set at open, bounds the wait in zmq_ctx_term */
    }
    if (publisher->context != NULL) {
        zmq_ctx_term(publisher->context);
    }
    free(publisher);
}
