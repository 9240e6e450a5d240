function poco_rt_stream_example(endpoint, session, unit_count, frames, rate_hz)
%POCO_RT_STREAM_EXAMPLE  An acquisition loop in MATLAB or GNU Octave: frames to a poco-rt server.
%   poco_rt_stream_example('tcp://127.0.0.1:8701', 'rig1', 117, 600, 30) sends 600 frames of 117
%   ROI values at 30 Hz to the server's frame socket and prints the frames sent and dropped.
%
%   It calls the C publisher through the MEX gateway poco_rt_mex, built once in this folder:
%       Octave:  mkoctfile --mex -I../c poco_rt_mex.c ../c/poco_rt_publisher.c -lzmq
%       MATLAB:  mex -I../c poco_rt_mex.c ../c/poco_rt_publisher.c -lzmq
%   Sending never waits: when the server is down or slow and 1000 frames are queued, a frame is
%   dropped and counted instead. In ScanImage, make the send in a user function on the
%   frameAcquired event, with the new frame's ROI values and ScanImage's frame number.
publisher = poco_rt_mex('open', endpoint, session);
closer = onCleanup(@() poco_rt_mex('close', publisher));  % also on Ctrl-C or an error
start = tic;
for frame_index = 0:frames - 1
    pause(max(0, frame_index / rate_hz - toc(start)));  % frame k is due at k / rate: no drift
    values = single(sin(0.2 * frame_index + 0.1 * (0:unit_count - 1)));  % put your ROI values here
    poco_rt_mex('send', publisher, values, frame_index);  % false if dropped; acquired now
end
[sent, dropped] = poco_rt_mex('stats', publisher);
fprintf('sent %d dropped %d\n', sent, dropped);
end
