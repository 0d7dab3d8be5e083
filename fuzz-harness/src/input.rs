//! Reading structured choices out of a fuzzer's bytes: every read succeeds (past the end it
//! gives zeros and empty chunks), so that any input is a valid program of choices.

/// A cursor over the fuzzer's bytes.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// A chunk of at most `max` bytes whose length is the next byte (or two, when `max` needs
    /// them).
    pub(crate) fn chunk(&mut self, max: usize) -> &'a [u8] {
        let want = if max > 255 {
            self.u16() as usize
        } else {
            self.byte() as usize
        };
        let n = want.min(max).min(self.data.len());
        let (c, rest) = self.data.split_at(n);
        self.data = rest;
        c
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// A short string: a chunk, lossily as UTF-8.
    pub(crate) fn string(&mut self) -> String {
        String::from_utf8_lossy(self.chunk(40)).into_owned()
    }
}
