"""The DICOM receiver: C-ECHO, C-STORE and MPPS SCP, durable spool and instance index."""
