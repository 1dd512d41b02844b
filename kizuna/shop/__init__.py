"""`kizuna simulate-shop`: a seeded synthetic shop that speaks the public tracking API.

Pure: ``catalog`` (products, content, names), ``people`` (who the customers are), ``sessions``
(what one visit sends), ``model`` (two years of history) and ``live`` (the stream after it),
``tally`` (what was sent). I/O: ``sender`` posts batches, ``runner`` paces them, ``check`` asks
profile what arrived, ``command`` is the CLI glue."""
