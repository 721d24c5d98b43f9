"""Export to SavedModel, ONNX and TFLite with parity checks.

Empty in this release: export is the work of the export issue. Installed as
`spzoo.export`.
"""
