/*
 * poco_rt_publisher: send frames to a poco-rt server from C, C++, MATLAB, LabVIEW or C#.
 *
 * A frame is one vector of N unit values (float32, float64 or uint16) with a frame index and an
 * acquisition time. The library encodes it in the poco-rt wire format, version 1 (docs/protocol.md:
 * a header part, then a little-endian C-order payload part) and sends it the way the Python
 * FramePublisher does: a ZeroMQ PUSH socket connected to the server's frame port, SNDHWM set to
 * the queue bound, every send non-blocking. When `queue_frames` frames are already waiting (the
 * server is down, slow or not up yet) the frame is dropped and counted, never waited for; ZeroMQ
 * re-dials a server that went away and the queued frames go out once it is back.
 *
 *     int32_t status;
 *     poco_rt_publisher *publisher = poco_rt_publisher_open(
 *         "tcp://127.0.0.1:8701", "rig1", POCO_RT_DEFAULT_QUEUE_FRAMES, POCO_RT_DEFAULT_LINGER_MS, &status);
 *     if (publisher == NULL) { fprintf(stderr, "%s\n", poco_rt_status_message(status)); return 1; }
 *     for (uint64_t index = 0; acquiring; ++index) {
 *         status = poco_rt_publisher_send_f32(publisher, roi_values, unit_count, index, poco_rt_now_ns());
 *         if (status < 0) { fprintf(stderr, "%s\n", poco_rt_status_message(status)); break; }
 *     }
 *     poco_rt_publisher_close(publisher);
 *
 * The ABI is flat, for foreign-function callers: the publisher is an opaque pointer, every argument
 * is a fixed-width integer, a double, a NUL-terminated string or a pointer to an array, no struct
 * crosses the boundary, and every fallible call returns an int32_t status (0 or a positive notice;
 * negative is an error, named by poco_rt_status_message). The calling convention is the platform's
 * C default (cdecl on 32-bit Windows).
 *
 * Threads: one publisher belongs to one thread at a time (ZeroMQ sockets are not thread-safe);
 * separate publishers may be used from separate threads. The encoders are pure and reentrant.
 *
 * Build (Debian: apt-get install libzmq3-dev), or see the Makefile beside this file:
 *     cc -std=c99 -O2 -fPIC -shared poco_rt_publisher.c -lzmq -o libpoco_rt_publisher.so
 * On Windows, build the DLL with -DPOCO_RT_BUILDING_DLL against a Windows libzmq (e.g. vcpkg's
 * zeromq) and compile C and C++ callers with -DPOCO_RT_USING_DLL.
 */
#ifndef POCO_RT_PUBLISHER_H
#define POCO_RT_PUBLISHER_H

#include <stdint.h>

#if defined(_WIN32) && defined(POCO_RT_BUILDING_DLL)
#define POCO_RT_API __declspec(dllexport)
#elif defined(_WIN32) && defined(POCO_RT_USING_DLL)
#define POCO_RT_API __declspec(dllimport)
#else
#define POCO_RT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The wire format this library writes (header byte 4); a server refuses other versions. */
#define POCO_RT_WIRE_VERSION 1

/* Payload dtype codes (header byte 6): the values' type as the caller holds them, sent as is. */
#define POCO_RT_FLOAT32 1
#define POCO_RT_FLOAT64 2
#define POCO_RT_UINT16 3

/* The server's default receive limits (poco_rt.wire.WireLimits); frames beyond them are refused here. */
#define POCO_RT_MAX_UNITS 131072u
#define POCO_RT_MAX_PAYLOAD_BYTES (16u * 1024u * 1024u)
#define POCO_RT_MAX_SESSION_NAME_BYTES 128u

/* A frame header is 28 bytes plus the session name: a buffer this large holds any header. */
#define POCO_RT_FRAME_HEADER_FIXED_BYTES 28u
#define POCO_RT_MAX_FRAME_HEADER_BYTES (POCO_RT_FRAME_HEADER_FIXED_BYTES + POCO_RT_MAX_SESSION_NAME_BYTES)

/* The Python FramePublisher's defaults: 1000 frames queued at most; close waits up to 0.5 s for them. */
#define POCO_RT_DEFAULT_QUEUE_FRAMES 1000u
#define POCO_RT_DEFAULT_LINGER_MS 500

/*
 * Statuses. The rejection codes carry the names of the reasons the server counts
 * (docs/protocol.md, "Validation order and reject reasons"): the library refuses, at the call, any
 * frame the server would refuse, so a mistake shows at the first frame instead of as a counter.
 */
#define POCO_RT_OK 0
#define POCO_RT_DROPPED 1                /* not an error: queue_frames were waiting, the frame was counted */
#define POCO_RT_ERR_INVALID_ARGUMENT (-1) /* a NULL pointer, queue_frames 0, a negative linger */
#define POCO_RT_ERR_BAD_SESSION_NAME (-2) /* empty, over 128 bytes, or outside [A-Za-z0-9][A-Za-z0-9._-]* */
#define POCO_RT_ERR_BAD_DTYPE (-3)       /* not POCO_RT_FLOAT32, POCO_RT_FLOAT64 or POCO_RT_UINT16 */
#define POCO_RT_ERR_BAD_SHAPE (-4)       /* unit_count 0 */
#define POCO_RT_ERR_OVERSIZED (-5)       /* unit_count over POCO_RT_MAX_UNITS or payload over the byte limit */
#define POCO_RT_ERR_BUFFER_TOO_SMALL (-6) /* an encoder's output buffer cannot hold the part */
#define POCO_RT_ERR_BAD_CURVE_KEY (-7)   /* a CURVE key that is not 40 Z85 characters, or half a key pair */
#define POCO_RT_ERR_NO_CURVE (-8)        /* this libzmq was built without CURVE (libsodium) */
#define POCO_RT_ERR_ZMQ (-9)             /* ZeroMQ refused: a malformed endpoint, out of sockets, a failed send */
#define POCO_RT_ERR_NO_MEMORY (-10)      /* the publisher or a frame's ZeroMQ message could not be allocated */

typedef struct poco_rt_publisher poco_rt_publisher;

/* A sentence naming the status and what to do about it; never NULL, static storage. */
POCO_RT_API const char *poco_rt_status_message(int32_t status);

/* The wall clock in nanoseconds since the Unix epoch (Python's time.time_ns()): the acquisition time
 * to send when the camera gives none. Forecasts echo it, so their age is comparable across machines. */
POCO_RT_API int64_t poco_rt_now_ns(void);

/* Bytes per value of a dtype code (4, 8, 2), or 0 for a code that is not one. */
POCO_RT_API uint32_t poco_rt_dtype_bytes(int32_t dtype);

/*
 * Encoders (pure): write one frame's two parts into caller buffers, exactly as poco_rt.wire
 * encode_frame does. The header is POCO_RT_FRAME_HEADER_FIXED_BYTES + strlen(session) bytes; the
 * payload unit_count * poco_rt_dtype_bytes(dtype) bytes, little-endian whatever the host's order.
 * Nothing is written on error; *written_bytes is set on success only.
 */
POCO_RT_API int32_t poco_rt_encode_frame_header(uint8_t *header, uint32_t header_capacity, uint32_t *written_bytes,
                                                const char *session, int32_t dtype, uint32_t unit_count,
                                                uint64_t frame_index, int64_t acquisition_time_ns);
POCO_RT_API int32_t poco_rt_encode_frame_payload(uint8_t *payload, uint32_t payload_capacity,
                                                 uint32_t *written_bytes, const void *values, int32_t dtype,
                                                 uint32_t unit_count);

/*
 * Open a publisher connected to `endpoint` (the server's frame socket, e.g. "tcp://127.0.0.1:8701";
 * GET /v1/server shows it) for the stream `session`. At most `queue_frames` frames wait in ZeroMQ's
 * queue; `close` lets them out for up to `linger_ms` (0 drops them). Connecting does not wait for
 * the server: it may start later. Returns NULL on error, with the reason in *status (which may be
 * NULL if the caller does not want it).
 */
POCO_RT_API poco_rt_publisher *poco_rt_publisher_open(const char *endpoint, const char *session, uint32_t queue_frames,
                                                      int32_t linger_ms, int32_t *status);

/*
 * The same with ZeroMQ CURVE encryption: `server_public_key` is the server's 40-character Z85
 * public key (the NAME.key file `poco-rt curve-keys` wrote); `public_key` and `secret_key` are this
 * client's pair, for a server with an allow-list, or both NULL for a fresh anonymous pair. With
 * all three NULL it is poco_rt_publisher_open: plain TCP.
 */
POCO_RT_API poco_rt_publisher *poco_rt_publisher_open_curve(const char *endpoint, const char *session,
                                                            uint32_t queue_frames, int32_t linger_ms,
                                                            const char *server_public_key, const char *public_key,
                                                            const char *secret_key, int32_t *status);

/*
 * Queue one frame of `unit_count` values without waiting: POCO_RT_OK when queued, POCO_RT_DROPPED
 * when the queue is full (the frame is counted and the server sees a gap), negative on a frame the
 * server would refuse (nothing is sent). The values are copied before the call returns, so a
 * camera buffer may be reused at once. `frame_index` is the frame's index in its session (the
 * camera's counter when there is one, so gaps are real gaps); `acquisition_time_ns` its
 * acquisition time, e.g. poco_rt_now_ns().
 */
POCO_RT_API int32_t poco_rt_publisher_send(poco_rt_publisher *publisher, const void *values, int32_t dtype,
                                           uint32_t unit_count, uint64_t frame_index, int64_t acquisition_time_ns);
/* Typed forms of poco_rt_publisher_send, for callers that declare array types (MATLAB, LabVIEW, C#). */
POCO_RT_API int32_t poco_rt_publisher_send_f32(poco_rt_publisher *publisher, const float *values, uint32_t unit_count,
                                               uint64_t frame_index, int64_t acquisition_time_ns);
POCO_RT_API int32_t poco_rt_publisher_send_f64(poco_rt_publisher *publisher, const double *values,
                                               uint32_t unit_count, uint64_t frame_index, int64_t acquisition_time_ns);
POCO_RT_API int32_t poco_rt_publisher_send_u16(poco_rt_publisher *publisher, const uint16_t *values,
                                               uint32_t unit_count, uint64_t frame_index, int64_t acquisition_time_ns);

/* Frames handed to ZeroMQ (queued or on the wire; the server's counters say what arrived), and frames
 * dropped because the queue was full. 0 for a NULL publisher. */
POCO_RT_API uint64_t poco_rt_publisher_sent(const poco_rt_publisher *publisher);
POCO_RT_API uint64_t poco_rt_publisher_dropped(const poco_rt_publisher *publisher);

/* Let queued frames out for up to linger_ms, then release the socket and the publisher. NULL is a no-op. */
POCO_RT_API void poco_rt_publisher_close(poco_rt_publisher *publisher);

#ifdef __cplusplus
}
#endif

#endif /* POCO_RT_PUBLISHER_H */
