"""radiometry"""
