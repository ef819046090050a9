"""Network layers, vector fields with closed-form Jacobians, divergence estimators and the fused
kernels the models are built from (one module per job; ``nn.names`` holds the choices)."""
