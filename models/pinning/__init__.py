"""PINning: Partial In-Network Training of a random rate network (Rajan, Harvey & Tank 2016)."""
