// An acquisition loop in C#: streams synthetic frames to a poco-rt server at a fixed rate.
//
//     mcs -out:StreamFrames.exe PocoRtPublisher.cs StreamFrames.cs     (or add both files to a .NET project)
//     mono StreamFrames.exe tcp://127.0.0.1:8701 rig1 117 600 30       (endpoint, session, units, frames, Hz)
using System;
using System.Diagnostics;
using System.Globalization;
using System.Threading;

public static class StreamFrames
{
    public static int Main(string[] args)
    {
        if (args.Length != 5)
        {
            Console.Error.WriteLine("usage: StreamFrames ENDPOINT SESSION UNITS FRAMES RATE_HZ");
            return 1;
        }
        int unitCount = int.Parse(args[2], CultureInfo.InvariantCulture);
        ulong frames = ulong.Parse(args[3], CultureInfo.InvariantCulture);
        double rateHz = double.Parse(args[4], CultureInfo.InvariantCulture);
        var values = new float[unitCount]; // one buffer, reused: Send copies it
        var clock = Stopwatch.StartNew();
        using (var publisher = new PocoRt.FramePublisher(args[0], args[1]))
        {
            for (ulong frameIndex = 0; frameIndex < frames; ++frameIndex)
            {
                // Frame k is due at k / rate, so a late frame never delays the ones after it.
                double waitMs = frameIndex * 1000.0 / rateHz - clock.Elapsed.TotalMilliseconds;
                if (waitMs > 0)
                {
                    Thread.Sleep(TimeSpan.FromMilliseconds(waitMs));
                }
                for (int unit = 0; unit < unitCount; ++unit) // put your ROI values here
                {
                    values[unit] = (float)Math.Sin(0.2 * frameIndex + 0.1 * unit);
                }
                publisher.Send(values, frameIndex, PocoRt.FramePublisher.NowNs());
            }
            Console.WriteLine("sent {0} dropped {1}", publisher.Sent, publisher.Dropped);
        }
        return 0;
    }
}
