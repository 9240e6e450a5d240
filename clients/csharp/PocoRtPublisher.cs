// The C frame publisher (clients/c) from C# through P/Invoke: for Bonsai nodes and other .NET acquisition
// programs. Needs libpoco_rt_publisher.so (Linux) or poco_rt_publisher.dll (Windows) where the runtime
// looks for native libraries (beside the program, or on LD_LIBRARY_PATH / PATH).
//
//     using (var publisher = new PocoRt.FramePublisher("tcp://127.0.0.1:8701", "rig1"))
//     {
//         bool queued = publisher.Send(roiValues, frameIndex, PocoRt.FramePublisher.NowNs());  // false: dropped
//     }
using System;
using System.Runtime.InteropServices;

namespace PocoRt
{
    /// <summary>poco_rt_publisher.h's flat C ABI, declared as the header has it.</summary>
    internal static class Native
    {
        private const string Library = "poco_rt_publisher";

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr poco_rt_status_message(int status);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern long poco_rt_now_ns();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr poco_rt_publisher_open_curve(
            [MarshalAs(UnmanagedType.LPStr)] string endpoint, [MarshalAs(UnmanagedType.LPStr)] string session,
            uint queueFrames, int lingerMs, [MarshalAs(UnmanagedType.LPStr)] string serverPublicKey,
            [MarshalAs(UnmanagedType.LPStr)] string publicKey, [MarshalAs(UnmanagedType.LPStr)] string secretKey,
            out int status);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int poco_rt_publisher_send_f32(
            IntPtr publisher, float[] values, uint unitCount, ulong frameIndex, long acquisitionTimeNs);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int poco_rt_publisher_send_f64(
            IntPtr publisher, double[] values, uint unitCount, ulong frameIndex, long acquisitionTimeNs);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int poco_rt_publisher_send_u16(
            IntPtr publisher, ushort[] values, uint unitCount, ulong frameIndex, long acquisitionTimeNs);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong poco_rt_publisher_sent(IntPtr publisher);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong poco_rt_publisher_dropped(IntPtr publisher);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void poco_rt_publisher_close(IntPtr publisher);
    }

    /// <summary>A refused frame or argument: Status is the library's negative code, Message its sentence.</summary>
    public sealed class PublisherException : Exception
    {
        public PublisherException(int status)
            : base(Marshal.PtrToStringAnsi(Native.poco_rt_status_message(status)))
        {
            Status = status;
        }

        public int Status { get; private set; }
    }

    /// <summary>
    /// Frames to a poco-rt server without ever waiting: Send returns false when queueFrames frames are already
    /// queued (the frame is dropped and counted). One publisher belongs to one thread at a time.
    /// </summary>
    public sealed class FramePublisher : IDisposable
    {
        private IntPtr publisher;

        /// <param name="serverPublicKey">The server's 40-character Z85 CURVE key, or null for plain TCP.</param>
        public FramePublisher(string endpoint, string session, uint queueFrames = 1000, int lingerMs = 500,
                              string serverPublicKey = null)
        {
            int status;
            publisher = Native.poco_rt_publisher_open_curve(
                endpoint, session, queueFrames, lingerMs, serverPublicKey, null, null, out status);
            if (publisher == IntPtr.Zero)
            {
                throw new PublisherException(status);
            }
        }

        /// <summary>The wall clock in ns since the Unix epoch: the acquisition time when the camera gives none.</summary>
        public static long NowNs()
        {
            return Native.poco_rt_now_ns();
        }

        public ulong Sent { get { return Native.poco_rt_publisher_sent(Open()); } }

        public ulong Dropped { get { return Native.poco_rt_publisher_dropped(Open()); } }

        public bool Send(float[] values, ulong frameIndex, long acquisitionTimeNs)
        {
            return Queued(Native.poco_rt_publisher_send_f32(Open(), values, Units(values), frameIndex, acquisitionTimeNs));
        }

        public bool Send(double[] values, ulong frameIndex, long acquisitionTimeNs)
        {
            return Queued(Native.poco_rt_publisher_send_f64(Open(), values, Units(values), frameIndex, acquisitionTimeNs));
        }

        public bool Send(ushort[] values, ulong frameIndex, long acquisitionTimeNs)
        {
            return Queued(Native.poco_rt_publisher_send_u16(Open(), values, Units(values), frameIndex, acquisitionTimeNs));
        }

        /// <summary>Lets queued frames out for up to lingerMs, then releases the socket.</summary>
        public void Dispose()
        {
            Native.poco_rt_publisher_close(publisher);
            publisher = IntPtr.Zero;
        }

        private IntPtr Open()
        {
            if (publisher == IntPtr.Zero)
            {
                throw new ObjectDisposedException("FramePublisher");
            }
            return publisher;
        }

        private static uint Units(Array values)
        {
            if (values == null)
            {
                throw new ArgumentNullException("values");
            }
            return (uint)values.Length;
        }

        private static bool Queued(int status)
        {
            if (status < 0)
            {
                throw new PublisherException(status);
            }
            return status == 0;
        }
    }
}
