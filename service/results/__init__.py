"""Results of an analysis: result rows, overlays, and the DICOM objects written back into the
source study (Secondary Capture, Parametric Maps, Comprehensive SR, fractional SEG)."""
