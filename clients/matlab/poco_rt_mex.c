/*
 * poco_rt_mex: the C frame publisher (clients/c) as one MEX function, for MATLAB and GNU Octave.
 *
 *     publisher = poco_rt_mex('open', endpoint, session)       % 1000 frames queued at most, 500 ms linger
 *     publisher = poco_rt_mex('open', endpoint, session, queue_frames, linger_ms)
 *     publisher = poco_rt_mex('open', endpoint, session, queue_frames, linger_ms, server_public_key)  % CURVE
 *     queued = poco_rt_mex('send', publisher, values, frame_index)    % acquired now
 *     queued = poco_rt_mex('send', publisher, values, frame_index, acquisition_time_ns)
 *     [sent, dropped] = poco_rt_mex('stats', publisher)
 *     poco_rt_mex('close', publisher)
 *     now_ns = poco_rt_mex('now_ns')                            % int64, the wall clock in ns
 *
 * `values` is a real vector of single, double or uint16, sent in that type. `queued` is false when
 * the queue was full: the frame was dropped and counted, never waited for. A refused frame or a bad
 * argument raises an error whose identifier names the reason (poco_rt:bad_session_name, ...).
 * Times are int64 nanoseconds: a double holds only microseconds at today's epoch.
 *
 * A publisher is a small integer into this file's table, checked on every call, so a closed or
 * made-up handle is an error rather than a crash; `clear poco_rt_mex` closes the open ones.
 *
 * Build, in this folder:
 *     Octave:  mkoctfile --mex -I../c poco_rt_mex.c ../c/poco_rt_publisher.c -lzmq
 *     MATLAB:  mex -I../c poco_rt_mex.c ../c/poco_rt_publisher.c -lzmq
 */
#include "mex.h"
#include "poco_rt_publisher.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_PUBLISHERS 64
#define MAX_EXACT_DOUBLE 9007199254740992.0 /* 2^53: doubles count integers exactly up to here */

static poco_rt_publisher *publishers[MAX_PUBLISHERS];
static int exit_hook_registered = 0;

static void close_all(void) {
    int slot;
    for (slot = 0; slot < MAX_PUBLISHERS; ++slot) {
        poco_rt_publisher_close(publishers[slot]);
        publishers[slot] = NULL;
    }
}

/* Raises the library's status as an error: "poco_rt:<reason>" and the status's sentence. */
static void raise_status(int32_t status) {
    const char *message = poco_rt_status_message(status);
    char identifier[64];
    size_t reason_chars = strcspn(message, ":");
    if (reason_chars > sizeof identifier - sizeof "poco_rt:") {
        reason_chars = sizeof identifier - sizeof "poco_rt:";
    }
    sprintf(identifier, "poco_rt:%.*s", (int)reason_chars, message);
    mexErrMsgIdAndTxt(identifier, "%s", message);
}

static void require(int condition, const char *message) {
    if (!condition) {
        mexErrMsgIdAndTxt("poco_rt:invalid_argument", "%s", message);
    }
}

/* A real numeric scalar with an integer value, exactly as given: doubles up to 2^53, the integer classes whole. */
static double read_whole_double(const mxArray *array, const char *name) {
    double value;
    char message[160];
    sprintf(message, "%.40s must be a real numeric scalar holding a whole number", name);
    require(mxIsNumeric(array) && !mxIsComplex(array) && mxGetNumberOfElements(array) == 1, message);
    value = mxGetScalar(array);
    require(value == floor(value) && fabs(value) <= MAX_EXACT_DOUBLE, message);
    return value;
}

static uint64_t read_u64(const mxArray *array, const char *name) {
    char message[160];
    if (mxGetClassID(array) == mxUINT64_CLASS && !mxIsComplex(array) && mxGetNumberOfElements(array) == 1) {
        return *(const uint64_t *)mxGetData(array);
    }
    sprintf(message, "%.40s must not be negative", name);
    require(read_whole_double(array, name) >= 0, message);
    return (uint64_t)mxGetScalar(array);
}

static int64_t read_i64(const mxArray *array, const char *name) {
    if (mxGetClassID(array) == mxINT64_CLASS && !mxIsComplex(array) && mxGetNumberOfElements(array) == 1) {
        return *(const int64_t *)mxGetData(array);
    }
    return (int64_t)read_whole_double(array, name);
}

/* A MATLAB string as a C string the caller frees with mxFree. */
static char *read_string(const mxArray *array, const char *name) {
    char message[160];
    char *text;
    sprintf(message, "%.40s must be a character vector", name);
    require(mxIsChar(array), message);
    text = mxArrayToString(array);
    require(text != NULL, message);
    return text;
}

static int read_handle(const mxArray *array) {
    double handle = read_whole_double(array, "publisher");
    require(handle >= 1 && handle <= MAX_PUBLISHERS && publishers[(int)handle - 1] != NULL,
            "publisher is not an open handle from poco_rt_mex('open', ...): it was closed, or never opened");
    return (int)handle - 1;
}

static mxArray *int64_scalar(int64_t value) {
    mxArray *array = mxCreateNumericMatrix(1, 1, mxINT64_CLASS, mxREAL);
    *(int64_t *)mxGetData(array) = value;
    return array;
}

static void open_publisher(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    char *endpoint;
    char *session;
    char *server_key = NULL;
    uint64_t queue_frames = POCO_RT_DEFAULT_QUEUE_FRAMES;
    int64_t linger_ms = POCO_RT_DEFAULT_LINGER_MS;
    int32_t status = POCO_RT_OK;
    int slot = 0;
    require(nlhs <= 1 && (nrhs == 3 || nrhs == 5 || nrhs == 6),
            "usage: publisher = poco_rt_mex('open', endpoint, session[, queue_frames, linger_ms[, server_public_key]])");
    while (slot < MAX_PUBLISHERS && publishers[slot] != NULL) {
        ++slot;
    }
    require(slot < MAX_PUBLISHERS, "64 publishers are open already; close one with poco_rt_mex('close', publisher)");
    if (nrhs >= 5) {
        queue_frames = read_u64(prhs[3], "queue_frames");
        linger_ms = read_i64(prhs[4], "linger_ms");
        require(queue_frames >= 1 && queue_frames <= UINT32_MAX, "queue_frames must be at least 1");
        require(linger_ms >= 0 && linger_ms <= INT32_MAX, "linger_ms must be 0 (drop queued frames at close) or more");
    }
    endpoint = read_string(prhs[1], "endpoint");
    session = read_string(prhs[2], "session");
    if (nrhs == 6) {
        server_key = read_string(prhs[5], "server_public_key");
    }
    publishers[slot] = poco_rt_publisher_open_curve(endpoint, session, (uint32_t)queue_frames, (int32_t)linger_ms,
                                                    server_key, NULL, NULL, &status);
    mxFree(endpoint);
    mxFree(session);
    mxFree(server_key);
    if (publishers[slot] == NULL) {
        raise_status(status);
    }
    plhs[0] = mxCreateDoubleScalar(slot + 1);
}

static int32_t dtype_of(const mxArray *values) {
    switch (mxGetClassID(values)) {
    case mxSINGLE_CLASS:
        return POCO_RT_FLOAT32;
    case mxDOUBLE_CLASS:
        return POCO_RT_FLOAT64;
    case mxUINT16_CLASS:
        return POCO_RT_UINT16;
    default:
        mexErrMsgIdAndTxt("poco_rt:bad_dtype", "values must be single, double or uint16 (sent in that type)");
        return 0;
    }
}

static void send_frame(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    int slot;
    int32_t dtype;
    int32_t status;
    size_t unit_count;
    uint64_t frame_index;
    int64_t acquisition_time_ns;
    require(nlhs <= 1 && (nrhs == 4 || nrhs == 5),
            "usage: queued = poco_rt_mex('send', publisher, values, frame_index[, acquisition_time_ns])");
    slot = read_handle(prhs[1]);
    dtype = dtype_of(prhs[2]);
    require(!mxIsComplex(prhs[2]) && !mxIsSparse(prhs[2]) && mxGetNumberOfDimensions(prhs[2]) == 2 &&
                (mxGetM(prhs[2]) == 1 || mxGetN(prhs[2]) == 1),
            "values must be a real, full vector: one value per unit");
    unit_count = mxGetNumberOfElements(prhs[2]);
    if (unit_count == 0) { /* an empty array may have no data pointer at all */
        raise_status(POCO_RT_ERR_BAD_SHAPE);
    }
    frame_index = read_u64(prhs[3], "frame_index");
    acquisition_time_ns = nrhs == 5 ? read_i64(prhs[4], "acquisition_time_ns") : poco_rt_now_ns();
    status = poco_rt_publisher_send(publishers[slot], mxGetData(prhs[2]), dtype,
                                    unit_count > UINT32_MAX ? UINT32_MAX : (uint32_t)unit_count, frame_index,
                                    acquisition_time_ns);
    if (status < 0) {
        raise_status(status);
    }
    plhs[0] = mxCreateLogicalScalar(status == POCO_RT_OK);
}

static void stats(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    int slot;
    require(nlhs <= 2 && nrhs == 2, "usage: [sent, dropped] = poco_rt_mex('stats', publisher)");
    slot = read_handle(prhs[1]);
    plhs[0] = mxCreateDoubleScalar((double)poco_rt_publisher_sent(publishers[slot]));
    if (nlhs == 2) {
        plhs[1] = mxCreateDoubleScalar((double)poco_rt_publisher_dropped(publishers[slot]));
    }
}

static void close_publisher(int nlhs, int nrhs, const mxArray *prhs[]) {
    int slot;
    require(nlhs == 0 && nrhs == 2, "usage: poco_rt_mex('close', publisher)");
    slot = read_handle(prhs[1]);
    poco_rt_publisher_close(publishers[slot]);
    publishers[slot] = NULL;
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    char *command;
    if (!exit_hook_registered) {
        mexAtExit(close_all);
        exit_hook_registered = 1;
    }
    require(nrhs >= 1, "usage: poco_rt_mex(command, ...), command one of open, send, stats, close, now_ns");
    command = read_string(prhs[0], "command");
    if (strcmp(command, "open") == 0) {
        mxFree(command);
        open_publisher(nlhs, plhs, nrhs, prhs);
    } else if (strcmp(command, "send") == 0) {
        mxFree(command);
        send_frame(nlhs, plhs, nrhs, prhs);
    } else if (strcmp(command, "stats") == 0) {
        mxFree(command);
        stats(nlhs, plhs, nrhs, prhs);
    } else if (strcmp(command, "close") == 0) {
        mxFree(command);
        close_publisher(nlhs, nrhs, prhs);
    } else if (strcmp(command, "now_ns") == 0) {
        mxFree(command);
        require(nlhs <= 1 && nrhs == 1, "usage: now_ns = poco_rt_mex('now_ns')");
        plhs[0] = int64_scalar(poco_rt_now_ns());
    } else {
        mxFree(command);
        mexErrMsgIdAndTxt("poco_rt:invalid_argument", "unknown command; use open, send, stats, close or now_ns");
    }
}
